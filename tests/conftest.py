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
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
