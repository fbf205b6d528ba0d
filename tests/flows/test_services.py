"""flows/services.py: Ray and Prefect's temporary API started side by side (unit tests: both are replaced)."""

from __future__ import annotations

import threading

import pytest

from flows import services
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

    def fake_api() -> None:
        assert ray_started.wait(5), "the API start did not run beside Ray's"
        calls.append(("api", threading.current_thread().name))
        if api_error is not None:
            raise api_error

    def fake_ray(config: RayConfig) -> dict:
        calls.append(("ray", threading.current_thread().name))
        ray_started.set()
        return {}

    monkeypatch.setattr(services, "start_temporary_prefect_api", fake_api)
    monkeypatch.setattr(services, "ensure_ray", fake_ray)
    return calls


def test_ray_in_the_main_thread_and_the_api_beside_it(monkeypatch):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: True)
    calls = record_starts(monkeypatch)
    services.start_run_services(RayConfig())
    assert sorted(calls) == [("api", "prefect-api-start"), ("ray", threading.main_thread().name)]


def test_an_api_that_fails_to_start_fails_the_call(monkeypatch):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: True)
    record_starts(monkeypatch, api_error=RuntimeError("Timed out while attempting to connect"))
    with pytest.raises(RuntimeError, match="Timed out"):
        services.start_run_services(RayConfig())


def test_with_an_api_url_only_ray_is_started(monkeypatch):
    monkeypatch.setattr(services, "temporary_prefect_api_needed", lambda: False)
    monkeypatch.setattr(services, "start_temporary_prefect_api", lambda: pytest.fail("started a temporary API"))
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
