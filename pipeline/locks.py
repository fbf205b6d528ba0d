"""Writers of shared store state take exclusive locks: one helper, ``exclusive_lock``, for every kind of lock.

- ``index_run_lock``: one run per index at a time (plan → publish), ``index/<name>/.run.lock``.
- ``collection_lock``: one writer of a collection's catalog, features, clip cache and codes at a time,
  ``locks/collection-<name>.lock``. Indexes that share a collection take it in turn.
- ``index_write_lock``: the short critical section of a publish or a rollback (choose ``v<N+1>``, swap ``CURRENT``).

Lock order, so that two runs never wait for each other: an index's run lock first, then its collections one at a
time, then the index's write lock. Each lock is an ``flock`` on a file, so it is released when the holding
process dies, even when killed with SIGKILL. A refusal names the holder (pid, run, since when).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import IndexBusyError
from pipeline.store import StoreLayout, validate_name


@contextlib.contextmanager
def exclusive_lock(path: Path, *, what: str, wait_seconds: float | None = 0.0, holder: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``wait_seconds`` (None: forever), else ``IndexBusyError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    handle.seek(0)
                    owner = handle.read().strip() or "unknown"
                    raise IndexBusyError(
                        f"another run is writing {what} ({owner}); wait for it to finish, or pass a wait time "
                        f"(--wait SECONDS) to queue behind it"
                    ) from None
                pause = 1.0 if deadline is None else max(0.05, deadline - time.monotonic())
                time.sleep(min(1.0, pause))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "holder": holder,
                                 "since": dt.datetime.now(dt.timezone.utc).isoformat()}))
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock on ``path`` now (for ``reelhash gc``, which never waits)."""
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def index_run_lock_path(layout: StoreLayout, index: str) -> Path:
    return layout.index_dir(index) / ".run.lock"


def collection_lock_path(layout: StoreLayout, collection: str) -> Path:
    return layout.root / "locks" / f"collection-{validate_name(collection, 'collection')}.lock"


def index_run_lock(layout: StoreLayout, index: str, *, wait_seconds: float = 0.0, holder: str = ""):
    return exclusive_lock(index_run_lock_path(layout, index), what=f"index {index!r}", wait_seconds=wait_seconds,
                          holder=holder)


def collection_lock(layout: StoreLayout, collection: str, *, wait_seconds: float | None = None, holder: str = ""):
    """Held while a run writes a collection's shared state; by default waits (runs of other indexes finish)."""
    return exclusive_lock(collection_lock_path(layout, collection), what=f"collection {collection!r}",
                          wait_seconds=wait_seconds, holder=holder)


def index_write_lock(layout: StoreLayout, index: str):
    """Serialises the short publish/rollback critical section of one index (always waits)."""
    return exclusive_lock(layout.index_dir(index) / ".lock", what=f"index {index!r}", wait_seconds=None,
                          holder="publish")
