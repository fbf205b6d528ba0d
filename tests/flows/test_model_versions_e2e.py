"""End to end: retraining a model under the same name never changes what a published index answers.

train → index with the alias → retrain with another seed → search (still the pinned version) → rehash with the
alias (now the new version). Real Prefect API, real Ray, real decord on 6 generated videos.
"""

from __future__ import annotations

import json

import pytest

from flows.cli import main as cli_main
from flows.train_hasher import train_hasher
from pipeline.models import load_model, resolve_model_id
from pipeline.publish import read_current_manifest
from pipeline.sample_collection import make_sample_collection
from pipeline.search import PublishedIndex, QueryHasher
from pipeline.store import StoreLayout
from pipeline.training.base import TrainRunConfig

pytestmark = pytest.mark.e2e

ENCODER = {"arch": "reelhash-tiny", "allow_random_weights": True}
SAMPLING = {"clip_seconds": 4.0, "frames_per_clip": 4}
QUERY = "a red circle moves left"


def _train(store, seed: int) -> str:
    result = train_hasher(TrainRunConfig(method="clip4hashing", collection="sample", store=str(store), bits=[16],
                                         encoder=ENCODER, sampling=SAMPLING, seed=seed,
                                         options={"epochs": 3, "hidden": 128, "seed": seed}))
    return result["models"][0]["model_id"]


def _search(store, capsys) -> dict:
    assert cli_main(["search", QUERY, "--store", str(store), "--index", "main", "--k", "6", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_retrain_keeps_the_published_pair_consistent_until_it_is_published(tmp_path, ray_instance, prefect_api,
                                                                           capsys):
    manifest = make_sample_collection(tmp_path / "videos", 6, seed=5)
    store, layout = tmp_path / "store", StoreLayout(tmp_path / "store")
    index = ["index", str(manifest), "--collection", "sample", "--index", "main", "--store", str(store),
             "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "4", "--method", "lsh"]
    assert cli_main(index) == 0
    first = _train(store, seed=0)
    assert resolve_model_id(layout, "clip4hashing-sample-16b") == first
    assert cli_main(index + ["--model", "clip4hashing-sample-16b"]) == 0
    capsys.readouterr()
    version, _, pinned = read_current_manifest(layout, "main")
    assert pinned["model_id"] == first and pinned["model"]["digest"] == load_model(layout, first).digest
    before = _search(store, capsys)

    second = _train(store, seed=1)
    assert second != first and resolve_model_id(layout, "clip4hashing-sample-16b") == second
    assert (layout.model_dir(first) / "config.json").exists()  # the first version is still there, untouched

    # Retraining published nothing, and search still hashes queries with the pinned version.
    after = _search(store, capsys)
    assert read_current_manifest(layout, "main")[0] == version
    assert after == before and after["model_id"] == first
    published = PublishedIndex.open(layout, "main")
    expected = published.search(QueryHasher(load_model(layout, first)).text_codes([QUERY]), 6)
    assert [hit.as_dict() for hit in expected] == after["results"]

    # The new version reaches the index only through an explicit run: here a rehash with the alias.
    assert cli_main(["rehash", "--model", "clip4hashing-sample-16b", "--index", "main", "--store", str(store),
                     "--json"]) == 0
    capsys.readouterr()
    new_version, _, manifest_now = read_current_manifest(layout, "main")
    assert new_version == version + 1 and manifest_now["model_id"] == second
    assert _search(store, capsys)["model_id"] == second
