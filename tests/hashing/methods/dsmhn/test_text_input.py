"""The text stream on frozen CLIP text features (text_input 'clip' / 'words+clip'), with a seeded random-weight
tiny open_clip model (no weights can be downloaded here; the code path is the one real weights take)."""

import math

import numpy as np
import pytest

from hashing.encoders import OpenClipEncoder, OpenClipEncoderConfig, WeightsUnavailableError
from hashing.methods.dsmhn import DsmhnModel, train_dsmhn
from hashing.methods.dsmhn.augment import word_dropout
from hashing.methods.dsmhn.encoder import DsmhnEncoder, DsmhnEncoderConfig

RANDOM_TINY_CLIP = {"arch": "reelhash-tiny", "allow_random_weights": True, "device": "cpu"}
TINY_CLIP_DIM = 64  # embed_dim of hashing/encoders/model_configs/reelhash-tiny.json


@pytest.fixture(scope="module")
def trained_on_clip_text(squares_train, make_config, make_options):
    clips, captions, labels = squares_train
    config = make_config(text_input="words+clip", clip_text_encoder=RANDOM_TINY_CLIP)
    return train_dsmhn(clips, captions, labels, config, make_options(epochs=3))


def test_config_needs_a_clip_encoder_exactly_when_clip_is_read(make_config):
    with pytest.raises(ValueError, match="needs clip_text_encoder"):
        make_config(text_input="clip")
    with pytest.raises(ValueError, match="only used with text_input"):
        make_config(clip_text_encoder=RANDOM_TINY_CLIP)
    with pytest.raises(ValueError, match="pretrained .* or checkpoint_path"):
        make_config(text_input="clip", clip_text_encoder={"arch": "ViT-B-32", "pretrained": "openai",
                                                          "checkpoint_path": "/x.pt"})
    config = make_config(text_input="clip", clip_text_encoder={"arch": "reelhash-tiny"})
    assert config.clip_text_encoder["arch"] == "reelhash-tiny" and config.clip_text_encoder["kind"] == "open_clip"
    with pytest.raises(ValueError, match="clip_text_dim"):
        DsmhnModel(config)  # the width of the CLIP embeddings is unknown until an encoder is built


def test_text_inputs_are_words_then_scaled_clip_embeddings(trained_on_clip_text):
    model, _ = trained_on_clip_text
    config = model.config
    assert config.clip_text_dim == TINY_CLIP_DIM
    captions = ["a red square moves left", "a blue square slides to the right"]
    inputs = model.text_to_tensor(captions).numpy()
    n_words = len(config.vocabulary)
    assert inputs.shape == (2, n_words + TINY_CLIP_DIM)
    assert set(np.unique(inputs[:, :n_words])) <= {0.0, 1.0}
    clip = OpenClipEncoder(OpenClipEncoderConfig(**RANDOM_TINY_CLIP)).encode_text(captions)
    np.testing.assert_allclose(inputs[:, n_words:], clip * math.sqrt(TINY_CLIP_DIM), rtol=1e-5, atol=1e-5)


def test_training_on_clip_text_learns_and_round_trips(tmp_path, trained_on_clip_text, squares_test):
    model, history = trained_on_clip_text
    assert history["total"][-1] < history["total"][0]
    clips, captions, _ = squares_test
    model.save(tmp_path / "m")
    loaded = DsmhnModel.load(tmp_path / "m")  # rebuilds the frozen CLIP from the saved config
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.encode_text(captions), model.encode_text(captions))
    np.testing.assert_array_equal(loaded.encode_video(clips), model.encode_video(clips))


def test_encoder_identity_includes_the_clip_text_encoder(tmp_path, trained_on_clip_text):
    model, _ = trained_on_clip_text
    model.save(tmp_path / "a")
    other = DsmhnModel(model.config.model_copy(update={"clip_text_encoder": {**RANDOM_TINY_CLIP, "random_seed": 1}}))
    other.load_state_dict(model.state_dict())
    other.save(tmp_path / "b")
    first, second = (DsmhnEncoder(DsmhnEncoderConfig(model_dir=str(tmp_path / name))) for name in "ab")
    assert first.encoder_id != second.encoder_id  # same weights file, other CLIP: other embeddings
    assert first.describe()["text_input"] == "words+clip"


def test_missing_clip_weights_fail_with_how_to_provide_them(squares_train, make_config, make_options):
    clips, captions, labels = squares_train
    config = make_config(text_input="clip", clip_text_encoder={"arch": "reelhash-tiny", "device": "cpu"})
    with pytest.raises(WeightsUnavailableError, match="checkpoint"):
        train_dsmhn(clips, captions, labels, config, make_options(epochs=1))


def test_word_dropout_leaves_the_clip_columns_alone():
    import torch

    torch.manual_seed(0)
    text = torch.ones(64, 30)
    dropped = word_dropout(text, 0.5, n_words=10)
    assert (dropped[:, 10:] == 1).all()
    assert 0.3 < (dropped[:, :10] == 0).float().mean() < 0.7
    assert word_dropout(text, 0.5, n_words=0) is text
