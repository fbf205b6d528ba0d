"""flows/services.py: Ray and Prefect's temporary API started side by side (unit tests: both are replaced), and the
temporary API's launcher against stand-in server processes (a real one runs in tests/flows/test_standalone_e2e.py)."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

from flows import services
from pipeline.errors import RunFailedError
from pipeline.locks import TEMPORARY_PREFECT_API_ENV
from pipeline.ray_runtime import RayConfig


def test_temporary_api_needed_only_without_an_api_url():
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert not services.temporary_prefect_api_needed()
    with temporary_settings(updates={PREFECT_API_URL: "", PREFECT_SERVER_EPHEMERAL_ENABLED: True}):
        assert services.temporary_prefect_api_needed()
    with temporary_settings(updates={PREFECT_API_URL: "", PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
        assert not services.temporary_prefect_api_needed()


def record_starts(monkeypatch, api_error: BaseException | None = None) -> list[tuple[str, str]]:
    """Replace both starts; each records (what, thread name) and the API start waits until Ray has started."""
    calls: list[tuple[str, str]] = []
    ray_started = threading.Event()

    def fake_api(api: services.TemporaryPrefectAPI, timeout_s: float) -> str:
        assert ray_started.wait(5), "the API start did not run beside Ray's"
        calls.append(("api", threading.current_thread().name))
        if api_error is not None:
            raise api_error
        return "http://127.0.0.1:1/api"

    def fake_ray(config: RayConfig) -> dict:
        calls.append(("ray", threading.current_thread().name))
        ray_started.set()
        return {}

    monkeypatch.setattr(services.TemporaryPrefectAPI, "launch", lambda api: calls.append(("launch", "")))
    monkeypatch.setattr(services.TemporaryPrefectAPI, "wait_ready", fake_api)
    monkeypatch.setattr(services, "ensure_ray", fake_ray)
    return calls


def test_ray_in_the_main_thread_and_the_api_beside_it(monkeypatch):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: True)
    calls = record_starts(monkeypatch)
    services.start_run_services(RayConfig())
    assert sorted(calls) == [("api", "prefect-api-start"), ("launch", ""), ("ray", threading.main_thread().name)]


def test_an_api_that_fails_to_start_fails_the_call(monkeypatch):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: True)
    record_starts(monkeypatch, api_error=RuntimeError("Timed out while attempting to connect"))
    with pytest.raises(RuntimeError, match="Timed out"):
        services.start_run_services(RayConfig())


def test_with_an_api_url_only_ray_is_started(monkeypatch):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: False)
    monkeypatch.setattr(services.TemporaryPrefectAPI, "launch", lambda api: pytest.fail("started a temporary API"))
    started = []
    monkeypatch.setattr(services, "ensure_ray", lambda config: started.append(config) or {})
    services.start_run_services(RayConfig(local_num_cpus=3))
    assert [config.local_num_cpus for config in started] == [3]


@pytest.mark.parametrize("api_needed", [True, False])
def test_after_ray_runs_once_ray_is_up_and_its_result_is_returned(monkeypatch, api_needed):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: api_needed)
    calls = record_starts(monkeypatch)

    def after_ray() -> str:
        calls.append(("after", threading.current_thread().name))
        return "pool"

    assert services.start_run_services(RayConfig(), after_ray=after_ray) == "pool"
    ours = [what for what, thread in calls if thread == threading.main_thread().name]
    assert ours == ["ray", "after"]


# ------------------------------------------------------------------- the temporary API's launcher

def stand_in(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def health_server(port: int) -> http.server.HTTPServer:
    """Answers 200 to every GET, as the API's /api/health does."""
    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_api_process_that_exits_is_a_one_line_error():
    api = services.TemporaryPrefectAPI()
    api.port, api.process = services.free_local_port(), stand_in("raise SystemExit(1)")
    with pytest.raises(RunFailedError, match="exited with status 1 before it answered.*PREFECT_API_URL"):
        api.wait_ready(timeout_s=30)


def test_an_api_that_does_not_answer_in_time_is_a_one_line_error():
    api = services.TemporaryPrefectAPI()
    api.port, api.process = services.free_local_port(), stand_in("import time; time.sleep(60)")
    try:
        with pytest.raises(RunFailedError, match="did not answer within 0 s"):
            api.wait_ready(timeout_s=0.3)
    finally:
        api.stop()
    assert api.process is None


def test_an_api_whose_port_was_taken_is_launched_again_and_then_points_this_process_at_it(monkeypatch):
    from prefect.settings import get_current_settings

    from pipeline.locks import prefect_api_url

    import prefect.context

    # Restored after the test, whatever wait_ready sets: the variables and Prefect's global settings (the test
    # session's Prefect API among them).
    for name in ("PREFECT_API_URL", "PREFECT_UI_URL", TEMPORARY_PREFECT_API_ENV):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT", prefect.context.GLOBAL_SETTINGS_CONTEXT)
    port = services.free_local_port()
    server = health_server(port)
    launches = []

    def launch(api: services.TemporaryPrefectAPI) -> None:
        launches.append(api.port)
        api.port, api.process = port, stand_in("import time; time.sleep(60)")

    monkeypatch.setattr(services.TemporaryPrefectAPI, "launch", launch)
    api = services.TemporaryPrefectAPI()
    api.port, api.process = 1, stand_in(f"raise SystemExit({services.PORT_TAKEN_EXIT_STATUS})")
    try:
        url = api.wait_ready(timeout_s=30)
        assert launches == [1] and url == f"http://127.0.0.1:{port}/api"
        assert os.environ["PREFECT_API_URL"] == url == os.environ[TEMPORARY_PREFECT_API_ENV]
        # What a thread of Prefect's that copied no context sees (the main thread of a test may hold the test
        # session's settings in its own context).
        seen = []
        reader = threading.Thread(target=lambda: seen.append((get_current_settings().api.url,
                                                              get_current_settings().ui_url, prefect_api_url())))
        reader.start()
        reader.join()
        # No "View at" link to a server without a UI; the store's locks do not take a private API for a shared one.
        assert seen == [(url, "", "")]
    finally:
        api.stop()
        server.shutdown()


def test_the_locks_use_a_configured_api_that_is_not_this_commands_temporary_one(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.locks import prefect_api_url

    monkeypatch.setenv(TEMPORARY_PREFECT_API_ENV, "http://127.0.0.1:8123/api")
    with temporary_settings(updates={PREFECT_API_URL: "http://prefect.example:4200/api"}):
        assert prefect_api_url() == "http://prefect.example:4200/api"
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:8123/api"}):
        assert prefect_api_url() == ""
