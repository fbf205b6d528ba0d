"""Kill tests: a `reelhash index` run is killed by SIGKILL at exact points of the protocol (crash points,
``pipeline/failpoints.py``), started again, and must end with exactly the index a clean run produced — same
model, same video ids, same codes, same manifest counts — reusing the units it had committed.

The extraction kill takes down the driver together with its own local Ray instance (the whole machine); the
other kills take down the driver of a run that joined this test session's Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.features import cached_fingerprints
from pipeline.publish import list_versions, read_current_manifest, verify_version
from pipeline.sample_collection import make_sample_collection
from pipeline.search import PublishedIndex
from pipeline.shards import committed_runs
from pipeline.store import StoreLayout

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
VIDEOS, UNIT = 8, 2


def index_command(manifest: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "index", str(manifest), "--collection", "news", "--index", "main",
            "--store", str(store), "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2",
            "--method", "lsh", "--bits", "32", "--unit-videos", str(UNIT), "--json"]


def run(command: list[str], *, shared_ray: bool, failpoint: str | None = None) -> subprocess.CompletedProcess:
    import ray
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "REELHASH_FAILPOINTS")}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    if shared_ray:
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    if failpoint:
        env["REELHASH_FAILPOINTS"] = failpoint
    # A session of its own: a crash point kills this process group (driver and, without RAY_ADDRESS, its Ray).
    return subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=900,
                          start_new_session=True)


def published(store: Path) -> dict:
    layout = StoreLayout(store)
    version, version_dir, manifest = read_current_manifest(layout, "main")
    assert verify_version(version_dir, manifest) == []
    index = PublishedIndex.open(layout, "main")
    rows = sorted((vid, clip, bytes(code)) for table in index.ids for vid, clip, code in
                  zip(table["video_id"].to_pylist(), table["clip_idx"].to_pylist(), table["code"].to_pylist()))
    # The model's name says what was fitted from which inputs; its digest suffix may differ from a clean run's:
    # the encoder's float16 output can differ in the last bit when Ray Data batches clips differently, which moves
    # a fitted mean by ~1e-7 without changing any code (docs/architecture.md, "Resuming").
    return {"version": version, "model": manifest["model_id"].rsplit("-", 1)[0], "counts": manifest["counts"],
            "rows": rows}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, ray_instance, prefect_api):
    root = tmp_path_factory.mktemp("resume")
    manifest = make_sample_collection(root / "media", VIDEOS, seed=31)
    done = run(index_command(manifest, root / "clean"), shared_ray=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"manifest": manifest, "root": root, "published": published(root / "clean")}


def feature_units(store: Path) -> list[dict]:
    sets = [p for p in (store / "features").glob("*/news/*") if p.name != "text"]
    return [manifest for path in sets for _, manifest in committed_runs(path)]


def test_killed_during_extraction_with_its_ray_instance_resumes_from_the_committed_units(clean):
    store = clean["root"] / "killed-extract"
    killed = run(index_command(clean["manifest"], store), shared_ray=False, failpoint="extract.unit_committed:2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    committed = feature_units(store)
    assert len(committed) == 2 and sum(len(unit["videos"]) for unit in committed) == 2 * UNIT, committed
    assert not StoreLayout(store).current_pointer("main").exists()

    resumed = run(index_command(clean["manifest"], store), shared_ray=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    counts = json.loads(resumed.stdout)["counts"]
    assert counts["from_cache"] == 2 * UNIT and counts["decoded"] == VIDEOS - 2 * UNIT
    assert published(store) == clean["published"]
    assert len(feature_units(store)) == VIDEOS // UNIT


@pytest.mark.parametrize("failpoint", ["before_publish", "publish.version_written"])
def test_killed_between_hash_and_publish_or_during_publish_ends_with_the_clean_index(clean, failpoint):
    store = clean["root"] / f"killed-{failpoint}"
    killed = run(index_command(clean["manifest"], store), shared_ray=True, failpoint=failpoint)
    assert killed.returncode == -9, killed.stderr[-3000:]
    layout = StoreLayout(store)
    assert not layout.current_pointer("main").exists()
    features = [p for p in (store / "features").glob("*/news/*") if p.name != "text"]
    assert len(cached_fingerprints(features[0])) == VIDEOS

    resumed = run(index_command(clean["manifest"], store), shared_ray=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    counts = json.loads(resumed.stdout)["counts"]
    assert counts["from_cache"] == VIDEOS and counts["decoded"] == 0
    assert published(store) == clean["published"]
    assert list_versions(layout, "main") == [1]
