"""Start a run's services side by side: Ray, and Prefect's temporary API when no ``PREFECT_API_URL`` is set.

A flow started without a Prefect server makes Prefect start a temporary API (a uvicorn subprocess, ~3 s here)
when the flow is called, and the flow then starts a local Ray instance (~3 s) when its first task needs it: one
after the other. Started here, before the flow is called, they start together (docs/architecture.md, "Start-up").
Both are the same instances the flow would have started: Prefect keeps one temporary API per process, and
``ensure_ray`` starts Ray once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from pipeline.ray_runtime import RayConfig, ensure_ray

T = TypeVar("T")


def temporary_prefect_api_needed() -> bool:
    """True where a flow would make Prefect start its temporary API: no API URL, temporary API allowed."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


def start_temporary_prefect_api() -> None:
    """Prefect's temporary API, started as Prefect's client would start it (and found by the client afterwards)."""
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().start()


def start_run_services(ray: RayConfig, after_ray: Callable[[], T] | None = None) -> T | None:
    """Ray (started or joined) and, where a flow would need it, Prefect's temporary API, at the same time; returns
    when both are up, with what ``after_ray`` (called as soon as Ray is up, while the API may still be starting)
    returned. An error of either is raised here, as the flow would have raised it."""
    if not temporary_prefect_api_needed():
        ensure_ray(ray)
        return after_ray() if after_ray is not None else None
    errors: list[BaseException] = []

    def start_api() -> None:
        try:
            start_temporary_prefect_api()
        except BaseException as error:  # raised in the caller's thread below
            errors.append(error)

    # Ray in this (the main) thread: ray.init installs its SIGTERM handler only from the main thread.
    api = threading.Thread(target=start_api, name="prefect-api-start", daemon=True)
    api.start()
    try:
        ensure_ray(ray)
        started = after_ray() if after_ray is not None else None
    finally:
        api.join()
    if errors:
        raise errors[0]
    return started
