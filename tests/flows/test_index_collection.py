import numpy as np

from flows.index_collection import driver_encoder_facts
from hashing.encoders import build_media_encoder
from pipeline.features import load_text_features, text_feature_dir
from pipeline.store import StoreLayout

TINY = {"arch": "reelhash-tiny", "allow_random_weights": True, "device": "cpu"}


def test_driver_encodes_new_captions_and_keeps_only_the_encoders_facts(tmp_path):
    layout = StoreLayout(tmp_path / "store")
    captions = ["a red square slides left", "a blue circle grows"]
    facts = driver_encoder_facts(layout, "news", TINY, captions)

    encoder = build_media_encoder(TINY)
    assert (facts.encoder_id, facts.frame_spec, facts.embed_dim) == (encoder.encoder_id, encoder.frame_spec,
                                                                     encoder.embed_dim)
    assert facts.description == encoder.describe()
    assert not hasattr(facts, "encode_text")  # no model is kept on the driver
    cached = load_text_features(text_feature_dir(layout, facts.encoder_id, "news"), captions)
    assert sorted(cached) == sorted(captions)
    expected = encoder.encode_text(captions[:1])[0]
    np.testing.assert_allclose(cached[captions[0]], expected, atol=2e-3)  # stored as float16
