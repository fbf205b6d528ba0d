"""Tests for pipeline/models.py: saving, loading and fitting the store's hash models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashing.encoders import OpenClipEncoderConfig
from hashing.hashers import ModelLoadError, make_hasher
from hashing.hashers.storage import save_hasher
from pipeline.errors import CorruptStoreError
from pipeline.models import fit_hasher, load_model, model_exists, resolve_model_id, save_model, save_model_metrics
from pipeline.sampling import SamplingConfig
from pipeline.store import StoreLayout

DIM = 16
ENCODER_CONFIG = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, random_seed=5)
SAMPLING = SamplingConfig(mode="keyframe", frames_per_clip=4, clip_seconds=2.0)


def _embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _save(layout: StoreLayout, name: str = "m1", method: str = "itq", seed: int = 2, hasher=None) -> tuple[str, object]:
    hasher = hasher or make_hasher(method, 16, seed=seed).fit(_embeddings(40))
    model_id = save_model(layout, name, hasher=hasher, encoder_config=ENCODER_CONFIG,
                          encoder_info={"encoder_id": "tiny-enc-123", "arch": "reelhash-tiny"},
                          sampling=SAMPLING, training={"n_clips": 30, "n_texts": 10})
    return model_id, hasher


def test_save_then_load_round_trip(tmp_path):
    layout = StoreLayout(tmp_path)
    model_id, hasher = _save(layout)
    assert model_id.startswith("m1-") and len(model_id) == len("m1-") + 8
    assert model_exists(layout, model_id)
    assert {p.name for p in layout.model_dir(model_id).iterdir()} == {"config.json", "weights.safetensors"}

    model = load_model(layout, model_id)
    assert model.model_id == model_id and model.digest.startswith(model_id[-8:])
    assert model.encoder_config == ENCODER_CONFIG
    assert model.encoder_id == "tiny-enc-123"
    assert model.sampling == SAMPLING
    assert model.config["training"] == {"n_clips": 30, "n_texts": 10}
    assert model.hasher.method == "itq" and model.hasher.n_bits == 16
    queries = _embeddings(7, seed=9)
    np.testing.assert_array_equal(model.hasher.encode(queries), hasher.encode(queries))


def test_retraining_under_the_same_name_makes_a_new_version_and_moves_the_alias(tmp_path):
    layout = StoreLayout(tmp_path)
    first, first_hasher = _save(layout, "m1", seed=2)
    first_files = {p.name: p.read_bytes() for p in layout.model_dir(first).iterdir()}
    second, _ = _save(layout, "m1", seed=3)
    assert second != first and second.startswith("m1-")
    # The first version is untouched; the alias names the newest one.
    assert {p.name: p.read_bytes() for p in layout.model_dir(first).iterdir()} == first_files
    assert resolve_model_id(layout, "m1") == second and load_model(layout, "m1").model_id == second
    assert load_model(layout, first).model_id == first
    # Saving identical content again finds the same version (and no staging directory is left behind). The same
    # fitted object, not a refit: a refit may differ in the last bits (threaded BLAS), which is a new version.
    again, _ = _save(layout, "m1", hasher=first_hasher)
    assert again == first and resolve_model_id(layout, "m1") == first
    assert sorted(p.name for p in layout.models_dir().iterdir()) == sorted(["_aliases", first, second])


def test_a_pinned_digest_that_no_longer_matches_is_refused(tmp_path):
    layout = StoreLayout(tmp_path)
    model_id, _ = _save(layout)
    digest = load_model(layout, model_id).digest
    assert load_model(layout, model_id, expected_digest=digest).model_id == model_id
    _, other = _save(layout, "m2", seed=7)
    (layout.model_dir(model_id) / "weights.safetensors").write_bytes(
        (layout.model_dir(resolve_model_id(layout, "m2")) / "weights.safetensors").read_bytes())
    with pytest.raises(CorruptStoreError, match=f"model {model_id} .* no longer matches the digest"):
        load_model(layout, model_id, expected_digest=digest)


def test_a_model_saved_before_versions_still_loads_by_its_directory_name(tmp_path):
    """Stores from before immutable versions hold models/<name>/ written in place, without a digest in the id."""
    layout = StoreLayout(tmp_path)
    hasher = make_hasher("lsh", 16, seed=1).fit(_embeddings(20))
    save_hasher(hasher, layout.model_dir("legacy-64b"), extra={
        "model_id": "legacy-64b", "encoder": {"encoder_id": "tiny-enc-123"},
        "encoder_config": ENCODER_CONFIG.model_dump(), "sampling": SAMPLING.model_dump(), "training": {}})
    model = load_model(layout, "legacy-64b")
    assert model.model_id == "legacy-64b" and len(model.digest) == 64
    # A new version trained under that name becomes the alias, but the pinned directory still loads as itself.
    _save(layout, "legacy-64b", method="lsh", seed=9)
    assert resolve_model_id(layout, "legacy-64b") != "legacy-64b"
    assert load_model(layout, "legacy-64b").model_id == "legacy-64b"


def test_metrics_are_a_sidecar_outside_the_digest(tmp_path):
    layout = StoreLayout(tmp_path)
    model_id, _ = _save(layout)
    digest = load_model(layout, model_id).digest
    save_model_metrics(layout, model_id, {"R@1": 12.5})
    assert json.loads((layout.model_dir(model_id) / "metrics.json").read_text()) == {"R@1": 12.5}
    assert load_model(layout, model_id, expected_digest=digest).hasher.n_bits == 16


def test_unknown_model_lists_known_ones(tmp_path):
    layout = StoreLayout(tmp_path)
    with pytest.raises(ModelLoadError, match="index a collection or train a model to create one"):
        load_model(layout, "missing")
    alpha, _ = _save(layout, "alpha")
    beta, _ = _save(layout, "beta", method="lsh")
    with pytest.raises(ModelLoadError, match=f"aliases: alpha, beta; known models: {alpha}, {beta}"):
        load_model(layout, "missing")


def test_model_without_encoder_description_is_a_clear_error(tmp_path):
    layout = StoreLayout(tmp_path)
    model_id, _ = _save(layout)
    config_path = layout.model_dir(model_id) / "config.json"
    config = json.loads(config_path.read_text())
    del config["sampling"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="lacks the encoder or sampling description"):
        load_model(layout, model_id)


def test_corrupt_weights_are_a_clear_error(tmp_path):
    layout = StoreLayout(tmp_path)
    model_id, _ = _save(layout)
    (layout.model_dir(model_id) / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(layout, model_id)


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
