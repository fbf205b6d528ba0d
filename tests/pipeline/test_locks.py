"""Tests for pipeline/locks.py with real processes: refusal naming the holder, waiting, release on SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from pipeline.locks import IndexBusyError, collection_lock, collection_lock_path, index_run_lock, is_locked
from pipeline.store import StoreLayout


def _hold(root: str, kind: str, name: str, ready, seconds: float) -> None:
    layout = StoreLayout(root)
    lock = index_run_lock(layout, name, holder="run A") if kind == "index" else \
        collection_lock(layout, name, holder="run A")
    with lock:
        ready.set()
        time.sleep(seconds)
        (layout.root / f"{name}.released").write_text("about to release")  # the last thing done under the lock


def _holder(tmp_path, kind: str, name: str, seconds: float = 60.0):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_hold, args=(str(tmp_path), kind, name, ready, seconds))
    process.start()
    assert ready.wait(60), "the holder process never took the lock"
    return process


@pytest.mark.parametrize("kind", ["index", "collection"])
def test_a_lock_held_by_another_process_is_refused_naming_it_and_freed_when_it_is_killed(tmp_path, kind):
    layout = StoreLayout(tmp_path)
    holder = _holder(tmp_path, kind, "main")
    try:
        lock = (index_run_lock(layout, "main") if kind == "index"
                else collection_lock(layout, "main", wait_seconds=0.0))
        with pytest.raises(IndexBusyError, match=f"run A.*{holder.pid}|{holder.pid}.*run A"):
            with lock:
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    with index_run_lock(layout, "main") if kind == "index" else collection_lock(layout, "main", wait_seconds=0.0):
        pass  # the kernel released the dead holder's lock


def test_a_second_process_waits_when_asked(tmp_path):
    layout = StoreLayout(tmp_path)
    holder = _holder(tmp_path, "collection", "shared", seconds=1.5)
    assert not (tmp_path / "shared.released").exists()
    with collection_lock(layout, "shared", wait_seconds=60):
        assert (tmp_path / "shared.released").exists()  # in only after the holder was done
    holder.join(30)


def test_is_locked_sees_another_process_and_locks_of_different_names_are_independent(tmp_path):
    layout = StoreLayout(tmp_path)
    holder = _holder(tmp_path, "collection", "alpha")
    try:
        assert is_locked(collection_lock_path(layout, "alpha"))
        assert not is_locked(collection_lock_path(layout, "beta"))
        with collection_lock(layout, "beta", wait_seconds=0.0), index_run_lock(layout, "alpha"):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    assert not is_locked(collection_lock_path(layout, "alpha"))


def test_a_held_prefect_lock_refuses_a_second_taker_at_once_and_is_free_after_release(tmp_path, prefect_api):
    from pipeline.locks import prefect_lock, prefect_lock_is_held
    from pipeline.store import as_path

    lock = as_path(tmp_path / "index" / "main" / ".run.lock")
    with prefect_lock(lock, what="index 'main'", holder="run A"):
        assert prefect_lock_is_held(lock)
        with pytest.raises(IndexBusyError, match="Prefect concurrency limit reelhash-lock-run.lock-"):
            with prefect_lock(lock, what="index 'main'", wait_seconds=0):
                pass
    assert not prefect_lock_is_held(lock)
    with prefect_lock(lock, what="index 'main'", wait_seconds=0):
        assert prefect_lock_is_held(lock)
