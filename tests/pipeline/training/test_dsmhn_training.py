"""Tests for pipeline/training/dsmhn.py: a short DSMHN run on a tiny generated collection through the
training contract (clip cache on real Ray, real decoding, a real small model)."""

from __future__ import annotations

import numpy as np
import pytest

from hashing.encoders import build_media_encoder
from hashing.methods.dsmhn.encoder import DsmhnEncoderConfig
from hashing.methods.dsmhn.model import DsmhnModel
from hashing.methods.dsmhn.vocab import tokenize
from pipeline.clip_cache import load_clips
from pipeline.models import load_model, resolve_model_id
from pipeline.plan import refresh_catalog
from pipeline.sample_collection import make_sample_collection
from pipeline.store import StoreLayout, read_json
from pipeline.training.base import TrainRunConfig, training_method
from pipeline.training.dsmhn import (
    _decoded_split,
    evaluate_split,
    resolve_options,
    split_rows,
    usable_rows,
)

N_VIDEOS = 12
# A small, fast model: 32×32 frames, 4 per clip, narrow streams; no augmentation so a few epochs fit.
FAST = {"epochs": 20, "batch_size": 8, "width": 8, "text_hidden": 64, "frame_size": 32,
        "augment_shift": 0, "augment_brightness": 0.0, "word_dropout": 0.0, "ablation": False}
SAMPLING = {"clip_seconds": 4.0, "frames_per_clip": 4}


def _config(store, **options) -> TrainRunConfig:
    return TrainRunConfig(method="dsmhn", collection="tiny", store=str(store), bits=[16], sampling=SAMPLING,
                          options={**FAST, **options}, seed=1, ray={"progress_bars": False})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_instance):
    root = tmp_path_factory.mktemp("tiny")
    manifest = make_sample_collection(root / "videos", N_VIDEOS, seed=2)
    layout = StoreLayout(root / "store")
    refresh_catalog(layout, str(manifest), "tiny")
    config = _config(layout.root)
    method = training_method("dsmhn")
    prepared = method.prepare(layout, config)
    result = method.train(layout, config, prepared, 16)
    return layout, config, prepared, result


def test_prepare_caches_clips_and_fixes_the_catalog_split(trained):
    layout, config, prepared, _ = trained
    assert prepared["clip_cache"]["decoded"] == N_VIDEOS and prepared["decode_failures"] == []
    assert prepared["train_videos"] + prepared["test_videos"] == N_VIDEOS and prepared["test_videos"] >= 2
    assert prepared["split_rule"].startswith("catalog split")
    again = training_method("dsmhn").prepare(layout, config)
    assert again["clip_cache"]["decoded"] == 0 and again["clip_cache"]["cached"] == N_VIDEOS
    assert again["split_key"] == prepared["split_key"]


def test_text_stream_learns_from_every_caption_of_a_training_video(trained):
    layout, config, prepared, result = trained
    train_data, _ = _decoded_split(layout, config, resolve_options(config), prepared)
    alternatives = train_data.caption_alternatives
    assert all(len(row) == 3 and row[0] == train_data.videos[i]["caption"]  # the manifest's three paraphrases
               for row, i in zip(alternatives, train_data.clip_video))
    vocabulary = set(DsmhnModel.load(layout.model_dir(result.model_id) / "streams").config.vocabulary)
    later_words = {word for row in alternatives for caption in row[1:] for word in tokenize(caption)}
    first_words = {word for row in alternatives for word in tokenize(row[0])}
    assert later_words - first_words and later_words <= vocabulary  # words only the paraphrases use are known


def test_training_reduces_the_loss_and_beats_chance(trained):
    layout, config, prepared, result = trained
    total = result.history["total"]
    assert len(total) == FAST["epochs"] and total[-1] < 0.8 * total[0]
    assert set(result.history) >= {"similarity", "label", "quantization", "balance"}
    metrics = result.metrics
    for direction in ("text_to_video", "video_to_text"):
        assert 0.0 <= metrics[f"{direction}.mAP_exact"] <= 1.0
        assert metrics[f"{direction}.mAP_any"] >= metrics[f"{direction}.mAP_exact"]
        assert 0.0 <= metrics[f"{direction}.motion_mAP"] <= 1.0
    assert metrics["chance.mAP_exact"] < metrics["chance.mAP_any"]
    # On the videos it learnt from, the model must be far better than chance (the held-out split of a
    # 12-video collection is too small to be a stable check).
    train_data, _ = _decoded_split(layout, config, resolve_options(config), prepared)
    encoder = build_media_encoder(load_model(layout, result.model_id).encoder_config)
    model = load_model(layout, result.model_id)
    seen = evaluate_split(train_data, encoder.encode_clips, encoder.encode_text, model.hasher.encode)
    chance = seen["chance"]["mAP@all_exact"]
    for direction in ("text_to_video", "video_to_text"):
        assert seen[direction]["hash"]["mAP@all_exact"] > chance + 0.3, (direction, seen[direction]["hash"], chance)


def test_saved_model_is_a_sign_hasher_with_a_dsmhn_encoder_and_metrics(trained):
    layout, config, _, result = trained
    assert result.model_id.startswith("dsmhn-tiny-16b-")
    assert resolve_model_id(layout, "dsmhn-tiny-16b") == result.model_id
    # The streams were assembled in a staging directory and moved with the model: none is left behind.
    assert sorted(p.name for p in layout.models_dir().iterdir()) == ["_aliases", result.model_id]
    assert (layout.model_dir(result.model_id) / "streams").is_dir()
    model = load_model(layout, result.model_id)
    assert model.hasher.method == "sign" and model.hasher.n_bits == 16
    assert model.encoder_config.kind == "dsmhn"
    assert model.sampling.frames_per_clip == 4
    assert model.config["training"]["model_config"]["frame_size"] == 32
    metrics = read_json(layout.model_dir(result.model_id) / "metrics.json")
    assert metrics["text_to_video"]["hash"]["mAP@all_exact"] == result.metrics["text_to_video.mAP_exact"]
    assert metrics["history"]["total"] == result.history["total"]


def test_save_load_round_trip_gives_identical_codes(trained, tmp_path):
    layout, config, prepared, result = trained
    stored = load_model(layout, result.model_id)
    _, clips = load_clips(layout, "tiny", {r["video_id"]: r["fingerprint"] for r in usable_rows(layout, "tiny")},
                          stored.sampling, 32)
    captions = ["a red circle moving left", "a blue square that grows"]
    first = build_media_encoder(stored.encoder_config)
    DsmhnModel.load(stored.encoder_config.model_dir).save(tmp_path / "copy")
    second = build_media_encoder(DsmhnEncoderConfig(model_dir=str(tmp_path / "copy")))
    hasher = stored.hasher
    np.testing.assert_array_equal(hasher.encode(first.encode_clips(clips)), hasher.encode(second.encode_clips(clips)))
    np.testing.assert_array_equal(hasher.encode(first.encode_text(captions)), hasher.encode(second.encode_text(captions)))
    np.testing.assert_array_equal(first.encode_clips(clips), second.encode_clips(clips))


def test_clip_text_input_reads_the_runs_own_clip_encoder(tmp_path):
    config = TrainRunConfig(method="dsmhn", collection="tiny", store=str(tmp_path), sampling=SAMPLING,
                            encoder={"arch": "reelhash-tiny", "checkpoint_path": "/weights/tiny.pt"},
                            options={"text_input": "words+clip"})
    options = resolve_options(config)
    assert options.model["clip_text_encoder"]["checkpoint_path"] == "/weights/tiny.pt"
    own = {"arch": "ViT-B-32", "pretrained": "openai"}
    assert resolve_options(_config(tmp_path, text_input="clip", clip_text_encoder=own)).model["clip_text_encoder"] == own
    assert "clip_text_encoder" not in resolve_options(_config(tmp_path)).model
    with pytest.raises(ValueError, match="unknown DSMHN option"):
        resolve_options(_config(tmp_path, clip_text_dim=64))  # read off the encoder, never set


def test_split_without_a_test_column_holds_out_a_deterministic_share():
    rows = [{"video_id": f"{i:04x}", "fingerprint": "f", "split": None} for i in range(50)]
    train, test, rule = split_rows(rows, 0.2)
    assert len(test) == 10 and len(train) == 40 and "held out" in rule
    assert split_rows(list(reversed(rows)), 0.2)[1] == sorted(test, key=lambda r: r["video_id"], reverse=True)
    rows[3]["split"] = "test"
    train, test, rule = split_rows(rows, 0.2)
    assert [r["video_id"] for r in test] == ["0003"] and len(train) == 49 and rule.startswith("catalog split")


def test_options_are_routed_and_checked(tmp_path):
    options = resolve_options(_config(tmp_path, lr=0.01, w_label=2.0, holdout_fraction=0.3))
    assert options.train["lr"] == 0.01 and options.model["w_label"] == 2.0 and options.run.holdout_fraction == 0.3
    assert options.model["frames_per_clip"] == 4 and options.frame_size == 32 and options.train["seed"] == 1
    with pytest.raises(ValueError, match="unknown DSMHN option"):
        resolve_options(_config(tmp_path, learning_rate=0.1))
    with pytest.raises(ValueError, match="--frames-per-clip"):
        resolve_options(_config(tmp_path, frames_per_clip=8))


def test_a_collection_without_catalog_says_to_index_it_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="reelhash index"):
        training_method("dsmhn").prepare(StoreLayout(tmp_path), _config(tmp_path))
