"""Writers of shared store state take exclusive locks: one helper, ``exclusive_lock``, for every kind of lock.

- ``index_run_lock``: one run per index at a time (plan → publish), ``index/<name>/.run.lock``.
- ``collection_lock``: one writer of a collection's catalog, features, clip cache and codes at a time,
  ``locks/collection-<name>.lock``. Indexes that share a collection take it in turn.
- ``index_write_lock``: the short critical section of a publish or a rollback (choose ``v<N+1>``, swap ``CURRENT``).

Lock order, so that two runs never wait for each other: an index's run lock first, then its collections one at a
time, then the index's write lock. A refusal names the holder (pid, host, run, since when) where it can.

How a lock is held depends on where the store is (docs/architecture.md, "Locks"):
- a local store: an ``flock`` on the lock file, released when the holding process dies, even by SIGKILL;
- an object store with a Prefect API configured (``PREFECT_API_URL``): a Prefect global concurrency limit of one
  slot per lock, held with a lease the client renews, so it reaches across machines and frees itself when its
  holder dies;
- an object store without a Prefect API: a lease object at the lock's path (owner, host, expiry) created with a
  conditional PUT, renewed by a heartbeat and taken over only once expired.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from pipeline.errors import IndexBusyError, RunFailedError
from pipeline.store import (
    StoreLayout,
    StorePath,
    create_exclusive,
    is_local,
    object_etag,
    read_json,
    remove_tree,
    replace_if_unchanged,
    validate_name,
)

LEASE_SECONDS = 60.0  # a lease object's lifetime; its holder renews it every third of that
PREFECT_LEASE_SECONDS = 60.0
PREFECT_API_TIMEOUT_SECONDS = 60.0
# Set (with PREFECT_API_URL) to the URL of the temporary Prefect API a command started for itself
# (flows/services.py): an API no other process shares, so its concurrency limits would lock nothing.
TEMPORARY_PREFECT_API_ENV = "REELHASH_TEMPORARY_PREFECT_API_URL"
logger = logging.getLogger(__name__)


def busy_error(what: str, owner: str) -> IndexBusyError:
    return IndexBusyError(f"another run is writing {what} ({owner}); wait for it to finish, or pass a wait time "
                          "(--wait SECONDS) to queue behind it")


def _holder_record(holder: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "holder": holder,
            "since": dt.datetime.now(dt.timezone.utc).isoformat()}


@contextlib.contextmanager
def exclusive_lock(path: StorePath, *, what: str, wait_seconds: float | None = 0.0,
                   holder: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``wait_seconds`` (None: forever), else ``IndexBusyError``."""
    if not is_local(path):
        lock = prefect_lock if prefect_api_url() else lease_lock
        with lock(path, what=what, wait_seconds=wait_seconds, holder=holder):
            yield
        return
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
                    raise busy_error(what, handle.read().strip() or "unknown") from None
                pause = 1.0 if deadline is None else max(0.05, deadline - time.monotonic())
                time.sleep(min(1.0, pause))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder_record(holder)))
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def is_locked(path: StorePath) -> bool:
    """Whether another process holds the lock on ``path`` now (for ``reelhash gc``, which never waits)."""
    if not is_local(path):
        return prefect_lock_is_held(path) if prefect_api_url() else lease_is_held(path)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


# ---------------------------------------------------------------- lease objects (object store, no Prefect API)


def _expired(lease: dict) -> bool:
    return float(lease.get("expires_at", 0.0)) < time.time()


def _read_lease(path: StorePath) -> tuple[dict, str] | None:
    """The lease and its etag, or None when there is none. The etag is read first: a replace conditional on it
    fails if the lease changed after, so a decision taken on older content is never applied."""
    etag = object_etag(path)
    if etag is None:
        return None
    try:
        lease = read_json(path)
    except (FileNotFoundError, ValueError):
        lease = {}  # released meanwhile, or unreadable: treat as expired (the conditional replace decides)
    return (lease if isinstance(lease, dict) else {}), etag


def _lease_bytes(owner: str, holder: str, seconds: float) -> bytes:
    record = {**_holder_record(holder), "owner": owner, "expires_at": time.time() + seconds}
    return json.dumps(record).encode()


def lease_is_held(path: StorePath) -> bool:
    lease = _read_lease(path)
    return lease is not None and not _expired(lease[0])


@contextlib.contextmanager
def lease_lock(path: StorePath, *, what: str, wait_seconds: float | None = 0.0, holder: str = "",
               lease_seconds: float = LEASE_SECONDS) -> Iterator[None]:
    """An exclusive lease object at ``path``: created with ``If-None-Match``, taken over with ``If-Match`` only
    once expired, renewed every ``lease_seconds / 3`` while held, deleted on release."""
    owner = uuid.uuid4().hex
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    while True:
        if create_exclusive(path, _lease_bytes(owner, holder, lease_seconds)):
            break
        current = _read_lease(path)
        if current is not None and _expired(current[0]):
            if replace_if_unchanged(path, _lease_bytes(owner, holder, lease_seconds), current[1]):
                break
            continue
        if deadline is not None and time.monotonic() >= deadline:
            lease = current[0] if current else {}
            shown = {key: lease[key] for key in ("pid", "host", "holder", "since") if key in lease}
            raise busy_error(what, json.dumps(shown) if shown else "unknown")
        time.sleep(1.0 if deadline is None else min(1.0, max(0.05, deadline - time.monotonic())))
    stop = threading.Event()
    state = {"etag": object_etag(path)}

    def renew() -> None:
        while not stop.wait(lease_seconds / 3):
            etag = state["etag"]
            if etag is None or not replace_if_unchanged(path, _lease_bytes(owner, holder, lease_seconds), etag):
                logger.error("lost the lock on %s (its lease was taken over); stop this run", what)
                return
            state["etag"] = object_etag(path)

    heartbeat = threading.Thread(target=renew, name=f"lease-{path.name}", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()
        current = _read_lease(path)
        if current is not None and current[0].get("owner") == owner:
            remove_tree(path)


# ---------------------------------------------------------------- Prefect global concurrency limits


def prefect_api_url() -> str:
    """The configured Prefect API (``PREFECT_API_URL``); empty when runs use a temporary local API."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url or ""
    return "" if url and url == os.environ.get(TEMPORARY_PREFECT_API_ENV) else url


def prefect_limit_name(path: StorePath) -> str:
    """One global concurrency limit per lock object: readable prefix, then a digest of the lock's full URI."""
    return f"reelhash-lock-{path.name.strip('.')[:40]}-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"


@contextlib.contextmanager
def prefect_lock(path: StorePath, *, what: str, wait_seconds: float | None = 0.0,
                 holder: str = "") -> Iterator[None]:
    """A one-slot Prefect global concurrency limit, held with a renewed lease (freed when the holder dies)."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    name = prefect_limit_name(path)
    from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
        except ObjectAlreadyExists:
            pass  # another process created it at the same moment
        except PrefectHTTPStatusError as error:
            if error.response.status_code != 409:
                raise
    with contextlib.ExitStack() as stack:
        if wait_seconds == 0:
            # Refuse only on the server's "locked" answer, not on a slow API: a timer this short
            # would report a busy index whenever the machine is loaded.
            slot = concurrency(name, occupy=1, timeout_seconds=PREFECT_API_TIMEOUT_SECONDS, max_retries=0,
                               lease_duration=PREFECT_LEASE_SECONDS, strict=True)
        else:
            slot = concurrency(name, occupy=1, timeout_seconds=wait_seconds,
                               lease_duration=PREFECT_LEASE_SECONDS, strict=True)
        try:
            stack.enter_context(slot)
        except TimeoutError:
            if wait_seconds == 0:
                raise RunFailedError(f"the Prefect API at {prefect_api_url()} did not answer within "
                                f"{PREFECT_API_TIMEOUT_SECONDS:.0f} s while taking the lock on {what}; "
                                "check that the server is up") from None
            raise busy_error(what, f"Prefect concurrency limit {name}") from None
        except Exception as error:
            if wait_seconds == 0 and _is_locked_response(error):
                raise busy_error(what, f"Prefect concurrency limit {name}") from None
            raise
        yield


def _is_locked_response(error: BaseException) -> bool:
    """Whether Prefect refused a slot because the limit is full (HTTP 423), anywhere in the cause chain."""
    import httpx

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 423:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def prefect_lock_is_held(path: StorePath) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(prefect_limit_name(path))
        except Exception:  # ObjectNotFound: never taken
            return False
    return bool(limit.active_slots)


def index_run_lock_path(layout: StoreLayout, index: str) -> StorePath:
    return layout.index_dir(index) / ".run.lock"


def collection_lock_path(layout: StoreLayout, collection: str) -> StorePath:
    return layout.lock_path(f"collection-{validate_name(collection, 'collection')}.lock")


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
