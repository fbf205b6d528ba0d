"""Tests for pipeline/models.py: saving, loading and fitting the store's hash models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashing.encoders import OpenClipEncoderConfig
from hashing.hashers import ModelLoadError, make_hasher
from pipeline.models import fit_hasher, load_model, model_exists, save_model, save_model_metrics
from pipeline.sampling import SamplingConfig
from pipeline.store import StoreLayout

DIM = 16
ENCODER_CONFIG = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, random_seed=5)
SAMPLING = SamplingConfig(mode="keyframe", frames_per_clip=4, clip_seconds=2.0)


def _embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _save(layout: StoreLayout, model_id: str = "m1", method: str = "itq"):
    hasher = make_hasher(method, 16, seed=2).fit(_embeddings(40))
    save_model(layout, model_id, hasher=hasher, encoder_config=ENCODER_CONFIG,
               encoder_info={"encoder_id": "tiny-enc-123", "arch": "reelhash-tiny"},
               sampling=SAMPLING, training={"n_clips": 30, "n_texts": 10})
    return hasher


def test_save_then_load_round_trip(tmp_path):
    layout = StoreLayout(tmp_path)
    assert not model_exists(layout, "m1")
    hasher = _save(layout)
    assert model_exists(layout, "m1")
    assert {p.name for p in layout.model_dir("m1").iterdir()} == {"config.json", "weights.safetensors"}

    model = load_model(layout, "m1")
    assert model.model_id == "m1"
    assert model.encoder_config == ENCODER_CONFIG
    assert model.encoder_id == "tiny-enc-123"
    assert model.sampling == SAMPLING
    assert model.config["training"] == {"n_clips": 30, "n_texts": 10}
    assert model.hasher.method == "itq" and model.hasher.n_bits == 16
    queries = _embeddings(7, seed=9)
    np.testing.assert_array_equal(model.hasher.encode(queries), hasher.encode(queries))


def test_metrics_are_saved_beside_the_model(tmp_path):
    layout = StoreLayout(tmp_path)
    _save(layout)
    save_model_metrics(layout, "m1", {"R@1": 12.5})
    assert json.loads((layout.model_dir("m1") / "metrics.json").read_text()) == {"R@1": 12.5}
    assert load_model(layout, "m1").hasher.n_bits == 16


def test_unknown_model_lists_known_ones(tmp_path):
    layout = StoreLayout(tmp_path)
    with pytest.raises(ModelLoadError, match="index a collection to create one"):
        load_model(layout, "missing")
    _save(layout, "alpha")
    _save(layout, "beta", method="lsh")
    with pytest.raises(ModelLoadError, match="known models: alpha, beta"):
        load_model(layout, "missing")


def test_model_without_encoder_description_is_a_clear_error(tmp_path):
    layout = StoreLayout(tmp_path)
    _save(layout)
    config_path = layout.model_dir("m1") / "config.json"
    config = json.loads(config_path.read_text())
    del config["sampling"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="lacks the encoder or sampling description"):
        load_model(layout, "m1")


def test_corrupt_weights_are_a_clear_error(tmp_path):
    layout = StoreLayout(tmp_path)
    _save(layout)
    (layout.model_dir("m1") / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(layout, "m1")


def test_fit_hasher_uses_both_modalities():
    clips, texts = _embeddings(10, seed=1), _embeddings(6, seed=2)
    fitted = fit_hasher("itq", 16, 0, clips, texts)
    reference = make_hasher("itq", 16, 0).fit(np.concatenate([clips, texts]))
    np.testing.assert_array_equal(fitted.encode(clips), reference.encode(clips))
    # Without texts the clips alone are the training set.
    alone = fit_hasher("lsh", 24, 4, clips, np.zeros((0, DIM), np.float32))
    np.testing.assert_array_equal(alone.encode(texts), make_hasher("lsh", 24, 4).fit(clips).encode(texts))


def test_fit_hasher_error_says_how_many_embeddings():
    with pytest.raises(ValueError, match="cannot fit a 16-bit itq model on 12 embeddings"):
        fit_hasher("itq", 16, 0, _embeddings(8), _embeddings(4))


def test_itq_that_cannot_be_fitted_falls_back_to_lsh_with_advice():
    from pipeline.models import fittable_method

    assert fittable_method("itq", 64, 40, 512) == ("lsh", fittable_method("itq", 64, 40, 512)[1])
    assert "only 40 embeddings" in fittable_method("itq", 64, 40, 512)[1]
    assert "--bits 40 or less" in fittable_method("itq", 64, 40, 512)[1]
    assert fittable_method("itq", 64, 64, 512) == ("itq", None)
    assert fittable_method("itq", 1024, 5000, 512)[0] == "lsh"
    assert fittable_method("lsh", 64, 3, 512) == ("lsh", None)
