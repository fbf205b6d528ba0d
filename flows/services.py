"""Start a run's services side by side: Ray, and a temporary Prefect API when no ``PREFECT_API_URL`` is set.

A flow started without a Prefect server makes Prefect start a temporary API (a uvicorn subprocess) when the flow
is called, and the flow then starts a local Ray instance (~3 s) when its first task needs it: one after the other.
Started here, before the flow is called, they start together (docs/architecture.md, "Start-up").

The temporary API is launched by ``TemporaryPrefectAPI``, not by Prefect's own ``SubprocessASGIServer``: the same
server process, started with the same command line and environment, but without importing Prefect's server
package into this process first. That import costs about 2 CPU-seconds, and with it the server process started
4 s into a run instead of 1.5 s. Once the API answers, ``PREFECT_API_URL`` points at it, so the flow's client uses
it as it would use any API, and ``TEMPORARY_PREFECT_API_ENV`` names it, so that the store's locks still treat the
run as having no shared API (``pipeline/locks.prefect_api_url``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline.errors import RunFailedError
from pipeline.locks import TEMPORARY_PREFECT_API_ENV
from pipeline.ray_runtime import RayConfig, ensure_ray

T = TypeVar("T")

# uvicorn's exit status when it cannot bind its port (another process took it after we checked): launch again.
PORT_TAKEN_EXIT_STATUS = 3
# Prefect's range for its temporary API. Not a port the OS picks (bind to port 0): those come from the range the OS
# also gives outgoing connections, and Ray opens many while the API starts, so one could take the port before uvicorn
# binds it. This range lies below Linux's ephemeral ports (32768-60999).
API_PORTS = range(8000, 9000)
HEALTH_POLL_S = 0.1


def temporary_prefect_api_needed() -> bool:
    """True where a flow would make Prefect start its temporary API: no API URL, temporary API allowed."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


def free_local_port(ports: range = API_PORTS) -> int:
    """A port of ``ports`` that nothing listens on at 127.0.0.1 now (chosen at random, as Prefect does)."""
    for port in random.sample(ports, min(len(ports), 50)):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RunFailedError(f"no free port in {ports.start}-{ports.stop - 1} for Prefect's temporary API; "
                         "set PREFECT_API_URL to a running Prefect server")


class TemporaryPrefectAPI:
    """Prefect's temporary API server for this process: ``launch`` starts it and returns at once, ``wait_ready``
    waits until it answers and points this process (and its children) at it, ``stop`` ends it (also at exit)."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def launch(self) -> None:
        """Start the server process, with the command line and environment Prefect's ``SubprocessASGIServer``
        uses (Prefect 3.8): uvicorn on Prefect's app factory, the UI off, the server told it is a temporary one."""
        import prefect
        from prefect.logging import get_logger
        from prefect.settings import get_current_settings

        self.port = free_local_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1",
               **get_current_settings().to_environment_variables(exclude_unset=True)}
        get_logger("temporary_api").info("Starting temporary server on http://127.0.0.1:%d (set PREFECT_API_URL "
                                         "to use a running Prefect server instead)", self.port)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env)
        atexit.register(self.stop)

    def wait_ready(self, timeout_s: float) -> str:
        """Wait until the API answers its health check; then set ``PREFECT_API_URL`` (and
        ``TEMPORARY_PREFECT_API_ENV``) to it, ``PREFECT_UI_URL`` to nothing, and refresh Prefect's settings. Returns
        the API's URL."""
        import httpx
        from prefect.context import refresh_global_settings_context

        deadline = time.monotonic() + timeout_s
        with httpx.Client() as client:
            while True:
                if self.process is None:
                    raise RunFailedError("the temporary Prefect API was stopped before it answered")
                status = self.process.poll()
                if status == PORT_TAKEN_EXIT_STATUS:
                    self.launch()  # the port was taken between our check and uvicorn's bind
                    continue
                if status is not None:
                    raise RunFailedError(f"the temporary Prefect API exited with status {status} before it answered "
                                         "(its messages are above); set PREFECT_API_URL to a running Prefect server")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RunFailedError(f"the temporary Prefect API did not answer within {timeout_s:.0f} s "
                                         "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); set PREFECT_API_URL to "
                                         "a running Prefect server, or raise that timeout")
                time.sleep(HEALTH_POLL_S)
        os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_PREFECT_API_ENV] = self.api_url
        # No UI link ("View at …") to a server that serves no UI and stops with this command.
        os.environ["PREFECT_UI_URL"] = ""
        refresh_global_settings_context()
        return self.api_url

    def stop(self) -> None:
        """End the server (as Prefect ends its own: SIGTERM, then SIGKILL after 5 s)."""
        process, self.process = self.process, None
        if process is None:
            return
        from prefect.logging import get_logger

        get_logger("temporary_api").info("Stopping temporary server on http://127.0.0.1:%d", self.port)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_run_services(ray: RayConfig, after_ray: Callable[[], T] | None = None) -> T | None:
    """Ray (started or joined) and, where a flow would need it, a temporary Prefect API, at the same time; returns
    when both are up, with what ``after_ray`` (called as soon as Ray is up, while the API may still be starting)
    returned. An error of either is raised here, as the flow would have raised it."""
    if not temporary_prefect_api_needed():
        ensure_ray(ray)
        return after_ray() if after_ray is not None else None
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    api = TemporaryPrefectAPI()
    api.launch()
    errors: list[BaseException] = []
    timeout_s = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())

    def wait_for_api() -> None:
        try:
            api.wait_ready(timeout_s)
        except BaseException as error:  # raised in the caller's thread below
            errors.append(error)

    # Ray in this (the main) thread: ray.init installs its SIGTERM handler only from the main thread.
    waiting = threading.Thread(target=wait_for_api, name="prefect-api-start", daemon=True)
    waiting.start()
    try:
        ensure_ray(ray)
        started = after_ray() if after_ray is not None else None
    finally:
        waiting.join()
    if errors:
        raise errors[0]
    return started
