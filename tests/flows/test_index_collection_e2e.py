"""End to end: a generated collection with bad files mixed in → the real flow on local Ray and a real
Prefect API → catalog, feature and code shards, a published faiss index → search and re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main as cli_main
from flows.config import IndexRunConfig
from flows.index_collection import index_collection
from pipeline.catalog import read_catalog
from pipeline.publish import current_version, read_current_manifest, verify_version
from pipeline.sample_collection import make_sample_collection
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.shards import committed_runs
from pipeline.store import StoreLayout

pytestmark = pytest.mark.e2e

N_GOOD = 6


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Sample videos plus a zero-byte mp4, a text file named .mp4, a truncated mp4 and a missing file."""
    root = tmp_path_factory.mktemp("collection")
    manifest_path = make_sample_collection(root, N_GOOD, seed=3)
    manifest = pq.read_table(manifest_path).to_pylist()
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("this is not a video\n")
    good = root / manifest[0]["uri"]
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    extra = [
        {"uri": "empty.mp4", "caption": "an empty file", "labels": ["bad"], "split": "train"},
        {"uri": "notes.mp4", "caption": "a text file", "labels": ["bad"], "split": "train"},
        {"uri": "truncated.mp4", "caption": "a truncated file", "labels": ["bad"], "split": "train"},
        {"uri": "missing/gone.mp4", "caption": "a missing file", "labels": ["bad"], "split": "train"},
    ]
    rows = [{k: r[k] for k in ("uri", "caption", "labels", "split")} for r in manifest] + extra
    pq.write_table(pa.Table.from_pylist(rows), root / "with_bad.parquet")
    return root


def _config(collection: Path, store: Path) -> IndexRunConfig:
    return IndexRunConfig(
        source=str(collection / "with_bad.parquet"),
        collection="sample",
        index="main",
        store=str(store),
        encoder={"arch": "reelhash-tiny", "allow_random_weights": True},
        sampling={"clip_seconds": 4.0, "frames_per_clip": 4},
        method="lsh",
        bits=64,
        max_failure_rate=0.9,
    )


@pytest.fixture(scope="module")
def first_run(collection, tmp_path_factory, ray_instance, prefect_api):
    store = tmp_path_factory.mktemp("store")
    return store, index_collection(_config(collection, store))


def test_every_file_gets_a_catalog_row_and_bad_files_fail_readably(first_run):
    store, result = first_run
    catalog = read_catalog(StoreLayout(store), "sample").to_pylist()
    assert len(catalog) == N_GOOD + 4
    by_uri = {row["uri"]: row for row in catalog}
    for uri in ("empty.mp4", "notes.mp4", "truncated.mp4", "missing/gone.mp4"):
        assert by_uri[uri]["status"] == "failed", uri
        assert by_uri[uri]["error"] and "\n" not in by_uri[uri]["error"]
    assert "empty" in by_uri["empty.mp4"]["error"] or "0 bytes" in by_uri["empty.mp4"]["error"]
    assert "missing" in by_uri["missing/gone.mp4"]["error"] or "no such" in by_uri["missing/gone.mp4"]["error"].lower()
    good = [row for row in catalog if row["status"] == "ok"]
    assert len(good) == N_GOOD
    assert result["counts"]["failed"] == 4
    assert {f["uri"] for f in result["failures"]} == {"empty.mp4", "notes.mp4", "truncated.mp4", "missing/gone.mp4"}


def test_codes_for_every_good_clip_in_a_committed_run(first_run):
    store, result = first_run
    layout = StoreLayout(store)
    run_dir = Path(result["codes_run"])
    manifests = dict(committed_runs(run_dir.parent))
    assert run_dir in manifests
    table = pa.concat_tables(pq.read_table(run_dir / f["file"]) for f in manifests[run_dir]["files"])
    assert table.schema.field("code").type == pa.binary(8)
    good_ids = {row["video_id"] for row in read_catalog(layout, "sample").to_pylist() if row["status"] == "ok"}
    assert set(table["video_id"].to_pylist()) == good_ids
    assert table.num_rows == result["counts"]["clips"] >= N_GOOD


def test_current_points_at_a_complete_version(first_run):
    store, result = first_run
    layout = StoreLayout(store)
    version, version_dir, manifest = read_current_manifest(layout, "main")
    assert version == result["published"]["version"] == 1
    assert verify_version(version_dir, manifest) == []
    assert manifest["counts"]["videos"] == N_GOOD
    assert not list(version_dir.parent.glob(".tmp-*"))
    report = Path(result["report_dir"])
    assert (report / "metrics.json").exists() and (report / "report.md").exists()
    assert list(report.glob("*.png"))


def test_search_like_an_indexed_video_returns_it_first_at_distance_zero(first_run, capsys):
    store, _ = first_run
    layout = StoreLayout(store)
    _, _, manifest = read_current_manifest(layout, "main")
    video_id = pq.read_table(Path(layout.index_version_dir("main", 1)) / manifest["shards"][0]["ids_file"])["video_id"][0].as_py()
    assert cli_main(["search", "--store", str(store), "--index", "main", "--like", video_id, "--k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["video_id"] == video_id and results[0]["distance"] == 0
    assert len(results) == 3


def test_search_like_a_file_and_by_text(first_run, collection, capsys):
    store, _ = first_run
    uri = pq.read_table(collection / "manifest.parquet")["uri"][1].as_py()
    assert cli_main(["search", "--store", str(store), "--like", str(collection / uri), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["distance"] == 0 and results[0]["uri"] == uri
    # Text: the query is hashed with the index's own model and ranked exactly as faiss ranks that code.
    query = "a red circle moves left"
    assert cli_main(["search", "--store", str(store), query, "--k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    index = PublishedIndex.open(StoreLayout(store), "main")
    expected = index.search(QueryHasher.for_index(StoreLayout(store), index).text_codes([query]), 2)
    assert result["results"] == [hit.as_dict() for hit in expected] and len(expected) == 2
    assert result["model_id"] == index.manifest["model_id"] and result["version"] == index.version
    distances = [hit["distance"] for hit in result["results"]]
    assert distances == sorted(distances) and len({hit["video_id"] for hit in result["results"]}) == 2
    uris = set(pq.read_table(collection / "manifest.parquet")["uri"].to_pylist())
    assert all(hit["uri"] in uris and 0.0 <= hit["t_start"] < hit["t_end"] for hit in result["results"])
    # The table view prints the same hits, one line each under a header.
    assert cli_main(["search", "--store", str(store), query, "--k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[1].split()[0] == "rank"
    assert [line.split()[3] for line in lines[2:]] == [hit["uri"] for hit in result["results"]]


def test_eval_prints_the_published_metrics(first_run, capsys):
    store, _ = first_run
    assert cli_main(["eval", "--store", str(store), "--verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 1 and out["verified"] is True
    assert "text_to_video.hash.R@1" in out["metrics"]["sample"]


def test_rerun_on_unchanged_collection_decodes_nothing_and_publishes_nothing(first_run, collection):
    store, first = first_run
    again = index_collection(_config(collection, store))
    assert again["counts"]["decoded"] == 0
    assert again["counts"]["from_cache"] == N_GOOD
    assert again["codes_run"] == first["codes_run"]
    assert again["published"]["published"] is False
    assert current_version(StoreLayout(store), "main") == 1
