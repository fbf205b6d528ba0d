"""One run per index at a time: a lock file held for the whole run (plan → publish).

A second run on the same index either waits (up to ``wait_seconds``) or is refused with a message that
names the run holding the lock. The lock is an ``flock`` on ``index/<name>/.run.lock``, so it is released
when the holding process dies, even when killed halfway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Iterator

from pipeline.errors import IndexBusyError
from pipeline.store import StoreLayout


@contextlib.contextmanager
def index_run_lock(layout: StoreLayout, index: str, *, wait_seconds: float = 0.0, holder: str = "") -> Iterator[None]:
    directory = layout.index_dir(index)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".run.lock"
    handle = open(path, "a+")
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    owner = handle.read().strip() or "unknown"
                    raise IndexBusyError(
                        f"another run is writing index {index!r} ({owner}); wait for it to finish, or pass "
                        f"a wait time (--wait SECONDS) to queue behind it"
                    ) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
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
