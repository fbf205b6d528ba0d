from __future__ import annotations

import threading
import time

import pytest

from pipeline.locks import IndexBusyError, index_run_lock
from pipeline.store import StoreLayout


def test_second_holder_is_refused_with_the_first_holder_named(tmp_path):
    layout = StoreLayout(tmp_path)
    with index_run_lock(layout, "main", holder="run A"):
        with pytest.raises(IndexBusyError, match="run A"):
            with index_run_lock(layout, "main"):
                pass
    with index_run_lock(layout, "main"):  # released after the first run ends
        pass


def test_second_holder_waits_when_asked(tmp_path):
    layout = StoreLayout(tmp_path)
    order = []
    first_has_lock = threading.Event()

    def first():
        with index_run_lock(layout, "main", holder="first"):
            first_has_lock.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    first_has_lock.wait(5)
    with index_run_lock(layout, "main", wait_seconds=10):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_locks_of_different_indexes_are_independent(tmp_path):
    layout = StoreLayout(tmp_path)
    with index_run_lock(layout, "a"), index_run_lock(layout, "b"):
        pass
