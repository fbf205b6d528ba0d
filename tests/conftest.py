"""Shared fixtures: one local Ray instance, one Prefect API and one S3 server per test run (each only when asked
for)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).parent))  # test helpers (s3_server, media_files); appended: tests/ mirrors the packages
# Generated CLIP-like features live with the benchmarks that measure on them (benchmarks/synthetic_clip.py).
sys.path.append(str(Path(__file__).parent.parent / "benchmarks"))
from s3_server import ACCESS_KEY, SECRET_KEY, make_bucket, pick_ports, start_s3_server  # noqa: E402

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The S3 server's address and credentials are in the environment from the start, so every process of the run
# (Ray workers included) reaches it the way users configure a bucket: the standard AWS variables.
S3_PORT = pick_ports(1)[0]
os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"})


TEST_BUCKET = "reelhash-tests"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = start_s3_server(tmp_path_factory.mktemp("s3-server"), s3_port=S3_PORT)
    make_bucket(server, TEST_BUCKET)  # one bucket: SeaweedFS gives each bucket its own volumes, and they run out
    yield server
    server.stop()


@pytest.fixture
def s3_prefix(s3_server) -> str:
    """A fresh prefix of the test bucket per test: ``s3://reelhash-tests/<unique>``."""
    return f"s3://{TEST_BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def ray_instance():
    import ray

    from pipeline.ray_runtime import RayConfig, ensure_ray

    resources = ensure_ray(RayConfig(local_num_cpus=4, object_store_mb=256, progress_bars=False))
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
