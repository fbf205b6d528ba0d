"""End to end: index with a random-weights tiny CLIP, then with a local checkpoint of it → train CLIP4Hashing on
the cached features (`train_hasher`) → `reelhash rehash` publishes the next version without decoding → search.

Real Prefect API, real Ray, real decord on a generated collection of 6 videos.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pyarrow.parquet as pq
import pytest
import torch

from flows.cli import main as cli_main
from flows.config import IndexRunConfig
from flows.index_collection import index_collection
from flows.rehash_index import RehashRunConfig, rehash_index
from flows.train_hasher import train_hasher
from hashing.encoders.open_clip_encoder import register_model_configs
from pipeline.models import load_model, resolve_model_id, save_model
from pipeline.publish import read_current_manifest, verify_version
from pipeline.sample_collection import make_sample_collection
from pipeline.store import StoreLayout
from pipeline.training.base import TrainRunConfig

pytestmark = pytest.mark.e2e

N_VIDEOS = 6
SAMPLING = {"clip_seconds": 4.0, "frames_per_clip": 4}
EPOCHS = 5


def _index(manifest: Path, store: Path, encoder: dict, refit: bool) -> dict:
    return index_collection(IndexRunConfig(
        source=str(manifest), collection="sample", index="main", store=str(store), encoder=encoder,
        sampling=SAMPLING, method="lsh", bits=64, refit=refit,
    ))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, ray_instance, prefect_api):
    """(a) index with random weights → v1; (b) index again with a local checkpoint (a saved state dict) → v2."""
    root = tmp_path_factory.mktemp("c4h")
    manifest = make_sample_collection(root / "videos", N_VIDEOS, seed=5)
    store = root / "store"
    random_run = _index(manifest, store, {"arch": "reelhash-tiny", "allow_random_weights": True}, refit=False)
    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        tiny = open_clip.create_model("reelhash-tiny", pretrained=None)
    checkpoint = root / "tiny-clip.pt"
    torch.save(tiny.state_dict(), checkpoint)
    encoder = {"arch": "reelhash-tiny", "checkpoint_path": str(checkpoint)}
    checkpoint_run = _index(manifest, store, encoder, refit=True)
    return store, encoder, random_run, checkpoint_run


@pytest.fixture(scope="module")
def trained(indexed, no_decoding_in_module):
    """`train_hasher` clip4hashing at 16 and 32 bits on the checkpoint encoder's cached features."""
    store, encoder, _, _ = indexed
    result = train_hasher(TrainRunConfig(
        method="clip4hashing", collection="sample", store=str(store), bits=[16, 32], encoder=encoder,
        sampling=SAMPLING, options={"epochs": EPOCHS, "hidden": 256},
    ))
    return result


@pytest.fixture(scope="module")
def rehashed(indexed, trained, no_decoding_in_module):
    """`reelhash rehash --model clip4hashing-sample-32b --index main` through the CLI (the flow runs in-process)."""
    store, _, _, _ = indexed
    return cli_main(["rehash", "--store", str(store), "--model", "clip4hashing-sample-32b", "--index", "main",
                     "--json"])


def test_random_weights_and_local_checkpoint_runs_both_publish(indexed):
    store, encoder, random_run, checkpoint_run = indexed
    assert random_run["published"]["version"] == 1 and checkpoint_run["published"]["version"] == 2
    assert random_run["counts"]["decoded"] == N_VIDEOS and checkpoint_run["counts"]["decoded"] == N_VIDEOS
    random_model = load_model(StoreLayout(store), random_run["model_id"])
    checkpoint_model = load_model(StoreLayout(store), checkpoint_run["model_id"])
    assert random_model.config["encoder"]["random_weights"] is True
    described = checkpoint_model.config["encoder"]
    assert described["random_weights"] is False and described["checkpoint_path"] == encoder["checkpoint_path"]
    assert random_model.encoder_id != checkpoint_model.encoder_id


def test_training_uses_the_cached_features_and_saves_both_bit_lengths(indexed, trained, no_decoding_in_module):
    store, _, _, checkpoint_run = indexed
    layout = StoreLayout(store)
    assert [m["model_id"] for m in trained["models"]] == [resolve_model_id(layout, "clip4hashing-sample-16b"),
                                                          resolve_model_id(layout, "clip4hashing-sample-32b")]
    for result in trained["models"]:
        model = load_model(layout, result["model_id"])
        assert model.hasher.method == "clip4hashing" and model.hasher.n_bits == result["n_bits"]
        assert model.encoder_id == load_model(layout, checkpoint_run["model_id"]).encoder_id
        assert len(result["history"]["total"]) == EPOCHS
        assert result["metrics"]["eval_set"] == "test split"
        assert "text_to_video.hash.R@1" in result["metrics"] and "video_to_text.float.MdR" in result["metrics"]
    report = Path(trained["report_dir"]) / "report.md"
    text = report.read_text()
    assert "| 32 | itq |" in text and "| 32 | lsh |" in text and "| 16 | clip4hashing |" in text
    assert list(Path(trained["report_dir"]).glob("loss-*.png"))
    assert no_decoding_in_module == []


def test_rehash_publishes_the_next_version_without_decoding(indexed, rehashed, no_decoding_in_module):
    store, _, _, _ = indexed
    assert rehashed == 0
    layout = StoreLayout(store)
    version, version_dir, manifest = read_current_manifest(layout, "main")
    assert version == 3 and verify_version(version_dir, manifest) == []
    model_id = resolve_model_id(layout, "clip4hashing-sample-32b")
    assert manifest["model_id"] == model_id and manifest["code_bits"] == 32
    assert manifest["counts"]["videos"] == N_VIDEOS
    assert manifest["collections"]["sample"]["codes_run"].startswith(f"codes/{model_id}/sample/")
    assert "text_to_video.hash.R@1" in manifest["metrics"]["sample"]
    assert no_decoding_in_module == []


def test_rehash_again_is_unchanged(indexed, rehashed, no_decoding_in_module):
    store, _, _, _ = indexed
    again = rehash_index(RehashRunConfig(model="clip4hashing-sample-32b", index="main", store=str(store)))
    assert again["published"]["published"] is False and again["published"]["version"] == 3
    assert all(not codes["written"] for codes in again["codes"])
    assert no_decoding_in_module == []


def test_search_like_a_video_finds_it_at_distance_zero_after_rehash(indexed, rehashed, capsys):
    store, _, _, _ = indexed
    layout = StoreLayout(store)
    _, version_dir, manifest = read_current_manifest(layout, "main")
    video_id = pq.read_table(version_dir / manifest["shards"][0]["ids_file"])["video_id"][0].as_py()
    capsys.readouterr()
    assert cli_main(["search", "--store", str(store), "--index", "main", "--like", video_id, "--k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 3
    assert out["results"][0]["video_id"] == video_id and out["results"][0]["distance"] == 0
    # Text queries go through the model's own encoder (the checkpoint) and the new hash net.
    assert cli_main(["search", "--store", str(store), "--index", "main", "a red circle moves left", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == N_VIDEOS


def test_rehash_errors_are_one_line_advice_not_tracebacks(indexed, rehashed, capsys):
    store, _, random_run, _ = indexed
    layout = StoreLayout(store)
    assert cli_main(["rehash", "--store", str(store), "--model", "nope", "--index", "main"]) == 2
    err = capsys.readouterr().err
    assert "model 'nope' not found" in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # A model whose encoder never indexed this collection: no features to hash, and rehash will not decode.
    stored = load_model(layout, random_run["model_id"])
    save_model(layout, "elsewhere", hasher=stored.hasher, encoder_config=stored.encoder_config,
               encoder_info={**stored.config["encoder"], "encoder_id": "some-other-encoder"},
               sampling=stored.sampling, training={})
    assert cli_main(["rehash", "--store", str(store), "--model", "elsewhere", "--index", "main"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "collection 'sample' has no cached CLIP features for encoder some-other-encoder" in err
    assert "reelhash index SOURCE --collection sample --model elsewhere --index SCRATCH_INDEX" in err
    assert read_current_manifest(layout, "main")[0] == 3
