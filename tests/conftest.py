"""Shared fixtures: one local Ray instance and one Prefect API per test run (both only when asked for)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_instance():
    import ray

    from pipeline.ray_runtime import RayConfig, ensure_ray

    resources = ensure_ray(RayConfig(local_num_cpus=4, object_store_mb=256, wait_for_min_actors_s=120, progress_bars=False))
    yield resources
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.logging.configuration import setup_logging
    from prefect.testing.utilities import prefect_test_harness

    # Configure Prefect's console logging now, on the real stderr: configured lazily inside a test that captures
    # output (capsys), its handler would keep writing to that test's closed stream in every later test.
    setup_logging()
    with prefect_test_harness(server_startup_timeout=180):
        yield


def refuse_decoding(patcher: pytest.MonkeyPatch) -> list[str]:
    """Make every video/image decode entry point of this process raise; returns the attempted calls.

    Patched where the callers look the names up, so steps that must work from cached features (training on
    CLIP features, rehash) prove they never decode. Ray workers are other processes and are not patched.
    """
    import pipeline.catalog
    import pipeline.decode
    import pipeline.extract
    import pipeline.images
    import pipeline.sampling
    import pipeline.search

    calls: list[str] = []

    def refuse(name: str):
        def raising(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called: this step must not decode video")
        return raising

    for module, name in ((pipeline.decode, "VideoSource"), (pipeline.decode, "probe_video"),
                         (pipeline.sampling, "VideoSource"), (pipeline.sampling, "decode_clips"),
                         (pipeline.catalog, "probe_video"), (pipeline.images, "decode_clips"),
                         (pipeline.images, "decode_media_clips"), (pipeline.extract, "decode_media_clips"),
                         (pipeline.search, "decode_media_clips")):
        patcher.setattr(module, name, refuse(f"{module.__name__}.{name}"))
    return calls


@pytest.fixture
def no_decoding(monkeypatch) -> list[str]:
    """Every decoder refuses to run during the test; the list of attempted calls must stay empty."""
    return refuse_decoding(monkeypatch)


@pytest.fixture(scope="module")
def no_decoding_in_module() -> list[str]:
    """``no_decoding`` for module-scoped fixtures."""
    with pytest.MonkeyPatch.context() as patcher:
        yield refuse_decoding(patcher)
