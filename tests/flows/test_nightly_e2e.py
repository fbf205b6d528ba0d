"""End to end for day-to-day use: incremental nightly runs, backfill, quality gate, rollback, concurrency,
and the nightly deployment triggered through a real Prefect API and read back from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main as cli_main
from flows.config import IndexRunConfig, NightlyConfig
from flows.index_collection import index_collection
from flows.nightly_reindex import nightly_reindex
from pipeline.catalog import video_id
from pipeline.locks import IndexBusyError, index_run_lock
from pipeline.errors import QualityGateError
from pipeline.publish import current_version, read_current_manifest, verify_version
from pipeline.registry import add_collection, remove_collection
from pipeline.sample_collection import make_sample_collection
from pipeline.store import StoreLayout, atomic_write_json

pytestmark = pytest.mark.e2e

SETTINGS = {
    "encoder": {"arch": "reelhash-tiny", "allow_random_weights": True},
    "sampling": {"clip_seconds": 6.0, "frames_per_clip": 2},
    "method": "lsh",
    "bits": 32,
}


def write_manifest(directory: Path, rows: list[dict]) -> Path:
    path = directory / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def subprocess_env() -> dict[str, str]:
    """Child processes join this test run's Ray instance and Prefect API instead of starting their own."""
    import ray
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PREFECT_API_URL": PREFECT_API_URL.value()}


def published_video_ids(layout: StoreLayout, index: str) -> dict[str, set[str]]:
    _, version_dir, manifest = read_current_manifest(layout, index)
    out: dict[str, set[str]] = {}
    for shard in manifest["shards"]:
        table = pq.read_table(version_dir / shard["ids_file"], columns=["collection", "video_id"])
        for collection, vid in zip(table["collection"].to_pylist(), table["video_id"].to_pylist()):
            out.setdefault(collection, set()).add(vid)
    return out


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Ten generated videos to build collections from (copied in and out as the tests need)."""
    root = tmp_path_factory.mktemp("pool")
    manifest = make_sample_collection(root, 10, seed=11)
    return root, pq.read_table(manifest).to_pylist()


@pytest.fixture(scope="module")
def indexed_once(pool, tmp_path_factory, ray_instance, prefect_api):
    """Collection 'alpha' (5 videos, with a manifest) registered in index 'main' and indexed once by nightly (v1)."""
    pool_root, rows = pool
    collection_dir = tmp_path_factory.mktemp("alpha")
    current = []
    for row in rows[:5]:
        shutil.copy2(pool_root / row["uri"], collection_dir / Path(row["uri"]).name)
        current.append({**row, "uri": Path(row["uri"]).name})
    manifest = write_manifest(collection_dir, current)
    store = tmp_path_factory.mktemp("store")
    layout = StoreLayout(store)
    add_collection(layout, "alpha", str(collection_dir), manifest=str(manifest), index="main")
    first = nightly_reindex(NightlyConfig(index="main", store=str(store), **SETTINGS))
    return {"layout": layout, "dir": collection_dir, "rows": current, "first": first}


@pytest.fixture
def archive(indexed_once, tmp_path):
    """A private copy of the indexed-once store and collection (v1), so every test starts from the same state
    whatever ran before it."""
    store, directory = tmp_path / "store", tmp_path / "alpha"
    shutil.copytree(indexed_once["layout"].root, store)
    shutil.copytree(indexed_once["dir"], directory)  # copy2 keeps mtimes: fingerprints are unchanged
    layout = StoreLayout(store)
    remove_collection(layout, "alpha")
    add_collection(layout, "alpha", str(directory), manifest=str(directory / "manifest.parquet"), index="main")
    assert current_version(layout, "main") == 1
    return {"layout": layout, "dir": directory, "rows": list(indexed_once["rows"]), "first": indexed_once["first"]}


def add_video(archive: dict, pool: tuple[Path, list[dict]], number: int) -> dict:
    """Copy pool video ``number`` into the archive's collection and its manifest; returns its row."""
    pool_root, pool_rows = pool
    row = {**pool_rows[number], "uri": Path(pool_rows[number]["uri"]).name}
    shutil.copy2(pool_root / pool_rows[number]["uri"], archive["dir"] / row["uri"])
    archive["rows"] = archive["rows"] + [row]
    write_manifest(archive["dir"], archive["rows"])
    return row


def test_first_nightly_run_indexes_every_file(archive):
    first, layout = archive["first"], archive["layout"]
    assert first["collections"]["alpha"]["counts"]["decoded"] == 5
    assert first["published"]["version"] == 1
    assert published_video_ids(layout, "main") == {"alpha": {video_id("alpha", r["uri"]) for r in archive["rows"]}}


def test_incremental_run_decodes_exactly_the_new_and_changed_files(archive, pool):
    pool_root, pool_rows = pool
    directory, rows, layout = archive["dir"], list(archive["rows"]), archive["layout"]
    added = [{**row, "uri": Path(row["uri"]).name} for row in pool_rows[5:7]]
    for row, source in zip(added, pool_rows[5:7]):
        shutil.copy2(pool_root / source["uri"], directory / row["uri"])
    changed, deleted = rows[0], rows[1]
    replacement = pool_rows[7]
    shutil.copy2(pool_root / replacement["uri"], directory / changed["uri"])  # new content under the same name
    rows[0] = {**replacement, "uri": changed["uri"]}
    (directory / deleted["uri"]).unlink()
    rows = [r for r in rows if r["uri"] != deleted["uri"]] + added
    write_manifest(directory, rows)

    second = nightly_reindex(NightlyConfig(index="main", store=str(layout.root), **SETTINGS))
    alpha = second["collections"]["alpha"]
    expected = {video_id("alpha", r["uri"]) for r in added} | {video_id("alpha", changed["uri"])}
    assert set(alpha["decoded_video_ids"]) == expected
    assert (alpha["counts"]["new"], alpha["counts"]["changed"], alpha["counts"]["deleted"]) == (2, 1, 1)
    assert second["published"]["version"] == 2
    assert published_video_ids(layout, "main") == {"alpha": {video_id("alpha", r["uri"]) for r in rows}}


def test_unchanged_nightly_run_decodes_nothing_and_keeps_the_version(archive):
    layout = archive["layout"]
    again = nightly_reindex(NightlyConfig(index="main", store=str(layout.root), **SETTINGS))
    assert again["collections"]["alpha"]["counts"]["decoded"] == 0
    assert again["published"] == {**again["published"], "published": False, "version": 1}
    assert current_version(layout, "main") == 1


def test_backfill_processes_only_the_new_collection(archive, pool, tmp_path_factory, capsys):
    pool_root, pool_rows = pool
    layout = archive["layout"]
    beta_dir = tmp_path_factory.mktemp("beta")
    beta_rows = [{**row, "uri": Path(row["uri"]).name} for row in pool_rows[8:10]]
    for row, source in zip(beta_rows, pool_rows[8:10]):
        shutil.copy(pool_root / source["uri"], beta_dir / row["uri"])
    manifest = write_manifest(beta_dir, beta_rows)
    result = index_collection(IndexRunConfig(source=str(manifest), collection="beta", index="main",
                                             store=str(layout.root), **SETTINGS))
    assert result["counts"]["decoded"] == 2
    assert set(result["published"]["collections"]) == {"alpha", "beta"}
    published = published_video_ids(layout, "main")
    assert published["alpha"] == {video_id("alpha", r["uri"]) for r in archive["rows"]}
    assert published["beta"] == {video_id("beta", r["uri"]) for r in beta_rows}
    beta_video = video_id("beta", beta_rows[0]["uri"])
    assert cli_main(["search", "--store", str(layout.root), "--index", "main", "--like", beta_video, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert hits[0]["video_id"] == beta_video and hits[0]["collection"] == "beta" and hits[0]["distance"] == 0


def test_quality_gate_refuses_a_worse_version_unless_forced(archive, pool):
    layout = archive["layout"]
    version, version_dir, manifest = read_current_manifest(layout, "main")
    # Pretend the published version scored perfectly: any new version now looks like a regression.
    def perfect(key: str, value: float) -> float:
        if key.endswith(("R@1", "R@5", "R@10")):
            return 100.0
        return 1.0 if key.endswith("mAP@all") else value

    assert manifest["metrics"]["alpha"], "the run must have produced metrics for the gate to compare"
    inflated = {name: {key: perfect(key, value) for key, value in metrics.items()}
                for name, metrics in manifest["metrics"].items()}
    atomic_write_json(version_dir / "manifest.json", {**manifest, "metrics": inflated})
    add_video(archive, pool, 5)  # something new, so that there is a version to refuse or publish
    with pytest.raises(QualityGateError, match="quality gate"):
        nightly_reindex(NightlyConfig(index="main", store=str(layout.root), quality_min_videos=1, **SETTINGS))
    assert current_version(layout, "main") == version == 1
    forced = nightly_reindex(NightlyConfig(index="main", store=str(layout.root), force_publish=True,
                                           quality_min_videos=1, **SETTINGS))
    assert forced["published"]["published"] is True and forced["published"]["version"] == 2
    assert current_version(layout, "main") == 2


def test_rollback_points_current_back_and_forth(archive, pool, capsys):
    layout = archive["layout"]
    new_row = add_video(archive, pool, 6)
    assert nightly_reindex(NightlyConfig(index="main", store=str(layout.root), **SETTINGS))["published"]["version"] == 2
    new_video = video_id("alpha", new_row["uri"])
    assert cli_main(["rollback", "--store", str(layout.root), "--index", "main", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"index": "main", "from_version": 2, "to_version": 1}
    assert current_version(layout, "main") == 1
    assert new_video not in published_video_ids(layout, "main")["alpha"]  # v1 answers again, without the new video
    assert cli_main(["rollback", "--store", str(layout.root), "--index", "main", "--to", "v2"]) == 0
    assert current_version(layout, "main") == 2 and new_video in published_video_ids(layout, "main")["alpha"]
    capsys.readouterr()
    assert cli_main(["rollback", "--store", str(layout.root), "--index", "main", "--to", "v99"]) == 2
    assert "no complete version v99" in capsys.readouterr().err


def test_a_second_run_is_refused_while_the_index_is_busy(archive):
    layout = archive["layout"]
    with index_run_lock(layout, "main", holder="test holder"):
        with pytest.raises(IndexBusyError, match="another run is writing index 'main'"):
            nightly_reindex(NightlyConfig(index="main", store=str(layout.root), **SETTINGS))


def test_two_simultaneous_runs_publish_once_and_the_second_finds_nothing_new(archive, pool, ray_instance,
                                                                             prefect_api):
    layout = archive["layout"]
    add_video(archive, pool, 7)
    env = subprocess_env()
    command = [sys.executable, "-m", "flows.cli", "nightly", "--store", str(layout.root), "--index", "main",
               "--clip-arch", "reelhash-tiny", "--random-weights", "--method", "lsh", "--bits", "32",
               "--wait", "600", "--json"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    results = [json.loads(out) for out, _ in outputs]
    # One run decoded the new video and published v2; the other queued behind it and found nothing to do.
    assert sorted(r["collections"]["alpha"]["counts"]["decoded"] for r in results) == [0, 1]
    assert sorted((r["published"]["published"], r["published"]["version"]) for r in results) == [(False, 2), (True, 2)]
    version, version_dir, manifest = read_current_manifest(layout, "main")
    assert version == 2 and verify_version(version_dir, manifest) == []
    assert not list(version_dir.parent.glob(".tmp-*"))
    assert published_video_ids(layout, "main") == {"alpha": {video_id("alpha", r["uri"]) for r in archive["rows"]}}


def test_nightly_deployment_runs_through_the_prefect_api(archive, ray_instance, prefect_api):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    from flows.deployments import nightly_deployment

    layout = archive["layout"]
    deployment = nightly_deployment("main", str(layout.root), settings={**SETTINGS, "force_publish": True})
    deployment.apply()
    flow_run = run_deployment("nightly_reindex/nightly-main", timeout=0)
    env = subprocess_env()
    runner = subprocess.run(
        [sys.executable, "-m", "flows.cli", "schedule", "--store", str(layout.root), "--index", "main", "--run-once"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert runner.returncode == 0, runner.stderr[-3000:]

    async def final_state_and_artifacts():
        async with get_client() as client:
            for _ in range(120):
                run = await client.read_flow_run(flow_run.id)
                if run.state and run.state.is_final():
                    break
                await asyncio.sleep(1)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
            deployments = await client.read_deployment_by_name("nightly_reindex/nightly-main")
            return run, artifacts, deployments

    run, artifacts, stored = asyncio.run(final_state_and_artifacts())
    assert run.state.is_completed(), run.state
    assert {a.key for a in artifacts} >= {"main-counts", "main-report", "alpha-failures"}
    assert stored.concurrency_limit == 1 or getattr(stored, "global_concurrency_limit", None) is not None
    assert [s.schedule.cron for s in stored.schedules] == ["0 2 * * *"]
