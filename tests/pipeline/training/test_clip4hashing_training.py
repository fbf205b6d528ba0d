"""Tests for pipeline/training/clip4hashing.py on a store fabricated from embeddings (nothing is decoded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from hashing.encoders import OpenClipEncoderConfig, build_media_encoder
from pipeline.models import load_model, resolve_model_id
from pipeline.rehash import MissingFeaturesError
from pipeline.sampling import SamplingConfig
from pipeline.store import StoreLayout
from pipeline.training.base import TrainRunConfig, training_method
from pipeline.training.clip4hashing import resolve_options, training_rows

ENCODER = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True)
SAMPLING = SamplingConfig(clip_seconds=4.0, frames_per_clip=4)
N_VIDEOS = 24  # every third one in the test split: 16 train / 8 test
FAST = {"epochs": 40, "hidden": 128, "batch_size": 16, "lr": 0.05}


@pytest.fixture(scope="module")
def encoder():
    return build_media_encoder(ENCODER)


def _videos() -> list[dict]:
    return [{"uri": f"v{i:02d}.mp4", "caption": f"caption {i}", "labels": [f"l{i % 4}"],
             "split": "test" if i % 3 == 0 else "train"} for i in range(N_VIDEOS)]


def _embeddings(dim: int, seed: int = 0) -> tuple[dict, dict]:
    """Videos along random directions (two clips each); captions near their video but not on it."""
    rng = np.random.default_rng(seed)
    clips, texts = {}, {}
    for video in _videos():
        centre = rng.normal(size=dim)
        clips[video["uri"]] = np.stack([centre + 0.2 * rng.normal(size=dim) for _ in range(2)]).astype(np.float32)
        texts[video["caption"]] = (centre + 0.5 * rng.normal(size=dim)).astype(np.float32)
    return clips, texts


def _config(store, **options) -> TrainRunConfig:
    return TrainRunConfig(method="clip4hashing", collection="synth", store=str(store), bits=[16, 32],
                          encoder=ENCODER, sampling=SAMPLING, options={**FAST, **options}, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, encoder, fabricate_collection, no_decoding_in_module):
    """prepare + train(16 bits) through the training contract, with every decoder refusing to run."""
    store = tmp_path_factory.mktemp("store")
    layout = StoreLayout(store)
    clips, texts = _embeddings(encoder.embed_dim)
    fabricate_collection(layout, "synth", _videos(), encoder_id=encoder.encoder_id, sampling=SAMPLING,
                         clip_embeddings=clips, text_embeddings=texts)
    method = training_method("clip4hashing")
    config = _config(store)
    prepared = method.prepare(layout, config)
    model = method.train(layout, config, prepared, 16)
    return method, config, layout, prepared, model


def test_prepare_pairs_the_train_split_from_cached_features(trained, encoder):
    _, _, _, prepared, _ = trained
    assert prepared["encoder_id"] == encoder.encoder_id and prepared["embed_dim"] == encoder.embed_dim
    assert prepared["videos_with_features"] == N_VIDEOS
    assert prepared["train_pairs"] == 16 and prepared["train_rule"] == "captioned videos outside the test split"
    assert prepared["train_options"]["seed"] == 3 and prepared["model_options"] == {"hidden": 128}
    json.dumps(prepared)  # a Prefect task result: small and JSON-able


def test_train_saves_a_loadable_model_with_thresholds_and_metrics(trained, no_decoding_in_module):
    _, config, layout, prepared, model = trained
    assert model.model_id.startswith(config.model_name(16) + "-") and config.model_name(16) == "clip4hashing-synth-16b"
    assert resolve_model_id(layout, "clip4hashing-synth-16b") == model.model_id
    stored = load_model(layout, model.model_id)
    assert stored.hasher.method == "clip4hashing" and stored.hasher.n_bits == 16
    assert stored.encoder_id == prepared["encoder_id"] and stored.sampling == SAMPLING
    weights = safetensors.numpy.load_file(layout.model_dir(model.model_id) / "weights.safetensors")
    assert weights["thresholds"].shape == (16,)
    saved = json.loads((layout.model_dir(model.model_id) / "config.json").read_text())
    assert saved["training"]["train_pairs"] == 16 and saved["training"]["model_config"]["hidden"] == 128
    assert saved["training"]["metrics"] == model.metrics
    metrics_file = json.loads((layout.model_dir(model.model_id) / "metrics.json").read_text())
    assert metrics_file["eval_set"] == "test split" and len(metrics_file["history"]["total"]) == FAST["epochs"]
    assert no_decoding_in_module == []


def test_the_trained_codes_retrieve_held_out_pairs_far_above_chance(trained):
    _, _, _, _, model = trained
    metrics = model.metrics
    assert metrics["eval_set"] == "test split" and metrics["n_videos"] == 8
    # Chance R@1 over 8 videos is 12.5 %; captions are noisy copies of their video, float cosine finds them all.
    assert metrics["text_to_video.float.R@1"] == 100.0
    assert metrics["text_to_video.hash.R@1"] >= 50.0 and metrics["video_to_text.hash.R@1"] >= 50.0
    assert metrics["text_to_video.hash.MdR"] <= 2
    assert model.history["total"][-1] < model.history["total"][0]


def test_extra_report_compares_with_itq_and_lsh_at_the_same_bits(trained):
    method, config, layout, prepared, model = trained
    extra, lines = method.extra_report(layout, config, prepared, [model])
    baselines = extra["baselines"]["16"]
    assert set(baselines) == {"clip4hashing", "itq", "lsh"}
    for name in ("itq", "lsh"):
        assert baselines[name]["eval_set"] == "test split" and "text_to_video.hash.R@1" in baselines[name]
    table = "\n".join(lines)
    assert "| 16 | clip4hashing |" in table and "| 16 | itq |" in table and "| 16 | lsh |" in table
    assert "float cosine" in table


def test_missing_features_say_which_index_command_to_run(tmp_path, encoder, fabricate_collection):
    layout = StoreLayout(tmp_path)
    clips, texts = _embeddings(encoder.embed_dim)
    # Features exist, but for another sampling than the training run asks for.
    fabricate_collection(layout, "synth", _videos(), encoder_id=encoder.encoder_id,
                         sampling=SamplingConfig(clip_seconds=2.0, frames_per_clip=4),
                         clip_embeddings=clips, text_embeddings=texts)
    with pytest.raises(MissingFeaturesError) as error:
        training_method("clip4hashing").prepare(layout, _config(tmp_path))
    message = str(error.value)
    assert f"{N_VIDEOS} of its {N_VIDEOS} indexable videos lack them" in message
    assert ("reelhash index SOURCE --collection synth --index SCRATCH_INDEX --refit --clip-arch reelhash-tiny "
            "--random-weights --sampling uniform --clip-seconds 4 --frames-per-clip 4") in message


def test_an_uncataloged_collection_says_to_index_it_first(tmp_path):
    with pytest.raises(MissingFeaturesError, match="has no catalog.*reelhash index SOURCE --collection synth"):
        training_method("clip4hashing").prepare(StoreLayout(tmp_path), _config(tmp_path))


def test_too_few_captioned_training_videos_is_a_clear_error(tmp_path, encoder, fabricate_collection):
    layout = StoreLayout(tmp_path)
    videos = [{**v, "caption": None} if v["split"] == "train" else v for v in _videos()]
    clips, texts = _embeddings(encoder.embed_dim)
    fabricate_collection(layout, "synth", videos, encoder_id=encoder.encoder_id, sampling=SAMPLING,
                         clip_embeddings=clips, text_embeddings={v["caption"]: texts[v["caption"]]
                                                                 for v in videos if v["caption"]})
    with pytest.raises(ValueError, match="0 captioned training videos.*needs at least 2"):
        training_method("clip4hashing").prepare(layout, _config(tmp_path))


def test_options_split_between_model_and_training_and_reject_unknown_keys(tmp_path):
    options = resolve_options(_config(tmp_path, c=0.0, momentum=0.5))
    assert options.model == {"hidden": 128, "c": 0.0}
    assert options.train == {"epochs": 40, "batch_size": 16, "lr": 0.05, "momentum": 0.5, "seed": 3}
    with pytest.raises(ValueError, match=r"unknown CLIP4Hashing option\(s\) \['colour'\]"):
        resolve_options(_config(tmp_path, colour="red"))
    with pytest.raises(ValueError, match=r"\['n_bits'\] are set by the run"):
        resolve_options(_config(tmp_path, n_bits=64))
    with pytest.raises(ValueError, match="epochs"):
        resolve_options(_config(tmp_path, epochs=0))


def test_training_rows_hold_out_the_test_split_or_use_everything():
    rows = [{"video_id": "a", "split": "train"}, {"video_id": "b", "split": "TEST"}, {"video_id": "c", "split": None}]
    assert training_rows(rows) == ([rows[0], rows[2]], "captioned videos outside the test split")
    unsplit = [{"video_id": "a", "split": None}, {"video_id": "b", "split": None}]
    assert training_rows(unsplit)[0] == unsplit


def test_a_failed_video_is_not_trained_on(tmp_path, encoder, fabricate_collection):
    layout = StoreLayout(tmp_path)
    clips, texts = _embeddings(encoder.embed_dim)
    videos = _videos()
    videos[1] = {**videos[1], "status": "failed", "error": "truncated"}
    del clips[videos[1]["uri"]]
    fabricate_collection(layout, "synth", videos, encoder_id=encoder.encoder_id, sampling=SAMPLING,
                         clip_embeddings=clips, text_embeddings=texts)
    prepared = training_method("clip4hashing").prepare(layout, _config(tmp_path))
    assert prepared["train_pairs"] == 15 and prepared["videos_with_features"] == N_VIDEOS - 1


def test_a_fresh_process_loads_the_saved_model(trained):
    """`reelhash rehash/search/index --model` load the model in a new process, before anything imported the method."""
    _, _, layout, _, model = trained
    script = ("import sys; from pipeline.models import load_model; from pipeline.store import StoreLayout; "
              "m = load_model(StoreLayout(sys.argv[1]), sys.argv[2]); print(m.hasher.method, m.hasher.n_bits)")
    done = subprocess.run([sys.executable, "-c", script, str(layout.root), model.model_id], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["clip4hashing", "16"]
