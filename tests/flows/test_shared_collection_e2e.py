"""End to end with two real processes: two `reelhash index` runs of different indexes that share one collection,
started at the same time, both publish a complete index (the collection lock makes one wait for the other)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.codes import read_code_run
from pipeline.publish import read_current_manifest, verify_version
from pipeline.sample_collection import make_sample_collection
from pipeline.shards import committed_runs
from pipeline.store import StoreLayout

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]


def test_two_indexes_sharing_a_collection_run_at_once_and_both_publish_every_video(tmp_path, ray_instance):
    import ray

    manifest = make_sample_collection(tmp_path / "media", 4, seed=7)
    store = tmp_path / "store"
    processes = []
    for index in ("alpha", "beta"):
        # Each process has its own Prefect API (its own PREFECT_HOME) and joins this test's Ray instance.
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / f"prefect-{index}"),
               "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "index", str(manifest), "--collection", "shared", "--index", index,
             "--store", str(store), "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2",
             "--method", "lsh", "--json"],
            cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
        assert json.loads(out)["published"]["version"] == 1

    layout = StoreLayout(store)
    for index in ("alpha", "beta"):
        _, version_dir, published = read_current_manifest(layout, index)
        assert verify_version(version_dir, published) == []
        assert published["counts"]["videos"] == 4
    # The shared collection's code runs are whole and readable; no writer's staging directory is left behind.
    model_ids = {read_current_manifest(layout, index)[2]["model_id"] for index in ("alpha", "beta")}
    for model_id in model_ids:
        runs = committed_runs(layout.codes_dir(model_id, "shared"))
        assert runs and all(read_code_run(path, m).num_rows == m["rows"] for path, m in runs)
    assert [p for p in store.rglob(".tmp-*")] == []
