"""Tests for flows/index_collection.py's driver-side encoder work: captions are encoded only when missing."""

import sys

import numpy as np
import pytest

from flows.index_collection import encode_new_captions
from hashing.encoders import build_media_encoder, media_encoder_facts
from pipeline.features import load_text_features, text_feature_dir
from pipeline.store import StoreLayout

TINY = {"arch": "reelhash-tiny", "allow_random_weights": True, "device": "cpu"}


def test_new_captions_are_encoded_and_cached_and_known_ones_build_no_encoder(tmp_path, monkeypatch):
    layout = StoreLayout(tmp_path / "store")
    captions = ["a red square slides left", "a blue circle grows", "a red square slides left"]
    facts = media_encoder_facts(TINY)
    assert encode_new_captions(layout, "news", facts_config(), facts.encoder_id, captions) == 2

    encoder = build_media_encoder(TINY)
    cached = load_text_features(text_feature_dir(layout, facts.encoder_id, "news"), captions)
    assert sorted(cached) == sorted(set(captions))
    np.testing.assert_allclose(cached[captions[0]], encoder.encode_text(captions[:1])[0], atol=2e-3)  # float16

    def no_build(config):
        raise AssertionError("an encoder was built although every caption is cached")

    monkeypatch.setattr(sys.modules["flows.index_collection"], "build_media_encoder", no_build)
    assert encode_new_captions(layout, "news", facts_config(), facts.encoder_id, captions[:2]) == 0


def test_a_text_encoder_that_disagrees_with_the_clips_encoder_id_is_refused(tmp_path):
    layout = StoreLayout(tmp_path / "store")
    with pytest.raises(RuntimeError, match="disagree"):
        encode_new_captions(layout, "news", facts_config(), "some-other-encoder-0123", ["a cat"])


def test_the_runs_encoder_actors_encode_new_captions_when_they_are_up(tmp_path, monkeypatch, ray_instance):
    from pipeline.encoder_pool import EncoderPool

    layout = StoreLayout(tmp_path / "store")
    facts = media_encoder_facts(TINY)
    pool = EncoderPool.start(facts_config(), size=1, encoder_cpus=0.5, batch_size=2)

    def no_build(config):
        raise AssertionError("the driver built an encoder although the run's actors are up")

    monkeypatch.setattr(sys.modules["flows.index_collection"], "build_media_encoder", no_build)
    try:
        assert encode_new_captions(layout, "news", facts_config(), facts.encoder_id, ["a cat", "a dog"], pool) == 2
    finally:
        pool.shutdown()
    cached = load_text_features(text_feature_dir(layout, facts.encoder_id, "news"), ["a cat"])
    expected = build_media_encoder(TINY).encode_text(["a cat"])[0]
    np.testing.assert_allclose(cached["a cat"], expected, atol=2e-3)


def facts_config():
    from hashing.encoders import encoder_config_from_dict

    return encoder_config_from_dict(TINY)
