"""End to end with the store AND the media only in an S3-compatible server (SeaweedFS on the loopback, signed
requests): index, backfill, nightly incremental, train, rehash, publish, search and rollback. The generated videos
are uploaded and then deleted from local disk, so no worker can read them from a path."""

from __future__ import annotations

import json
import shutil

import pytest

from flows.cli import main as cli_main
from flows.train_hasher import train_hasher
from pipeline.catalog import read_catalog, video_id
from pipeline.models import load_model
from pipeline.publish import current_version, read_current_manifest, verify_version
from pipeline.sample_collection import make_sample_collection
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.store import StoreLayout
from pipeline.training.base import TrainRunConfig
from s3_server import upload_collection

pytestmark = pytest.mark.e2e

ENCODER = ["--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2"]
QUERY = "a red circle moves left"


def published_ids(layout: StoreLayout) -> dict[str, set[str]]:
    version = PublishedIndex.open(layout, "main")
    out: dict[str, set[str]] = {}
    for table in version.ids:
        for collection, vid in zip(table["collection"].to_pylist(), table["video_id"].to_pylist()):
            out.setdefault(collection, set()).add(vid)
    return out


def run_json(argv: list[str], capsys) -> dict:
    assert cli_main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_everything_in_the_object_store(tmp_path, s3_prefix, ray_instance, prefect_api, capsys):
    media, store = f"{s3_prefix}/media", f"{s3_prefix}/store"
    generated = tmp_path / "generated"
    make_sample_collection(generated / "news", 5, seed=11)
    make_sample_collection(generated / "archive", 2, seed=12)
    news = upload_collection(generated / "news", f"{media}/news", keep=4)
    archive = upload_collection(generated / "archive", f"{media}/archive")
    layout = StoreLayout.from_option(store)

    # Index: media listed, probed and decoded from the bucket; everything written to the bucket.
    first = run_json(["index", f"{media}/news/", "--collection", "news", "--index", "main", "--store", store,
                      *ENCODER, "--method", "lsh"], capsys)
    assert first["published"]["version"] == 1 and first["counts"]["decoded"] == 4
    catalog = read_catalog(layout, "news")
    assert set(catalog["path"].to_pylist()) == {f"{media}/news/{row['uri']}" for row in news}
    assert all(fp.count("-") == 1 for fp in catalog["fingerprint"].to_pylist())  # size-ETag from object metadata

    # Backfill a second collection into the same index.
    run_json(["index", f"{media}/archive/", "--collection", "archive", "--index", "main", "--store", store,
              *ENCODER, "--method", "lsh"], capsys)
    assert published_ids(layout) == {"news": {video_id("news", r["uri"]) for r in news},
                                     "archive": {video_id("archive", r["uri"]) for r in archive}}

    # Nightly: a new object appears; only it is decoded.
    shutil.rmtree(generated / "archive")
    news = upload_collection(generated / "news", f"{media}/news")
    shutil.rmtree(generated)  # from here on the media exist only in the bucket
    nightly = run_json(["nightly", "--index", "main", "--store", store, *ENCODER[:3], "--method", "lsh"], capsys)
    assert nightly["collections"]["news"]["counts"]["decoded"] == 1
    assert nightly["collections"]["archive"]["counts"]["decoded"] == 0
    assert published_ids(layout)["news"] == {video_id("news", r["uri"]) for r in news}

    # Train on the cached features in the bucket, then rehash the index with the new model.
    trained = train_hasher(TrainRunConfig(method="clip4hashing", collection="news", store=store, bits=[16],
                                          encoder={"arch": "reelhash-tiny", "allow_random_weights": True},
                                          sampling={"frames_per_clip": 2}, options={"epochs": 2, "hidden": 64}))
    model_id = trained["models"][0]["model_id"]
    before = current_version(layout, "main")
    run_json(["rehash", "--model", model_id, "--index", "main", "--store", store, "--force"], capsys)
    version, version_dir, manifest = read_current_manifest(layout, "main")
    assert version == before + 1 and manifest["model_id"] == model_id and verify_version(version_dir, manifest) == []

    # Search answers exactly what faiss answers for the model's query code, from the published version.
    found = run_json(["search", QUERY, "--store", store, "--index", "main", "--k", "4"], capsys)
    expected = PublishedIndex.open(layout, "main").search(QueryHasher(load_model(layout, model_id)).text_codes([QUERY]), 4)
    assert found["version"] == version and found["results"] == [hit.as_dict() for hit in expected]

    # Rollback swaps CURRENT back with one PUT.
    assert cli_main(["rollback", "--index", "main", "--store", store]) == 0
    assert current_version(layout, "main") == version - 1
    assert not (tmp_path / "reelhash-data").exists()
