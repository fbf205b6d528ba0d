import json

import numpy as np
import pytest

from hashing.encoders import FrameSpec, MediaEncoder, build_media_encoder, encoder_config_from_dict
from hashing.hashers import ModelLoadError
from hashing.methods.dsmhn import DsmhnConfig, DsmhnModel
from hashing.methods.dsmhn.encoder import DsmhnEncoder, DsmhnEncoderConfig
from hashing.methods.dsmhn.model import CONFIG_FILE, WEIGHTS_FILE, resample_indices


def test_config_validates(make_config):
    with pytest.raises(ValueError, match="multiple of 8"):
        make_config(n_bits=12)
    with pytest.raises(ValueError, match="duplicates"):
        make_config(labels=["a", "a"])
    with pytest.raises(ValueError, match="must not be empty"):
        make_config(vocabulary=[])


def test_encode_shapes_and_range(make_config, squares_test):
    clips, captions, _ = squares_test
    model = DsmhnModel(make_config())
    for codes in (model.encode_video(clips), model.encode_images(clips[:, 0]), model.encode_text(captions)):
        assert codes.dtype == np.float32 and codes.shape == (len(clips), 16)
        assert np.abs(codes).max() < 1


def test_encode_rejects_wrong_pixels(make_config, squares_test):
    clips = squares_test[0]
    model = DsmhnModel(make_config())
    with pytest.raises(ValueError, match="uint8"):
        model.encode_video(clips.astype(np.float32))
    with pytest.raises(ValueError, match="S=16"):
        model.encode_video(np.zeros((1, 4, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="list of strings"):
        model.encode_text("a red square")


def test_other_frame_counts_are_resampled(make_config, squares_test):
    clips = squares_test[0]
    model = DsmhnModel(make_config())
    assert resample_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert resample_indices(1, 4).tolist() == [0, 0, 0, 0]
    doubled = np.repeat(clips, 2, axis=1)  # 8 frames: every frame twice -> resampled back to the 4 originals
    assert np.array_equal(model.encode_video(doubled), model.encode_video(clips))
    assert model.encode_video(clips[:, :1]).shape == (len(clips), 16)  # an image as a one-frame clip


def test_save_load_gives_identical_codes(tmp_path, trained_tiny, squares_test):
    model, _ = trained_tiny
    clips, captions, _ = squares_test
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = DsmhnModel.load(tmp_path / "m")
    assert loaded.config == model.config and not loaded.training
    assert np.array_equal(loaded.encode_video(clips), model.encode_video(clips))
    assert np.array_equal(loaded.encode_images(clips[:, 0]), model.encode_images(clips[:, 0]))
    assert np.array_equal(loaded.encode_text(captions), model.encode_text(captions))


def test_load_errors_are_model_load_errors(make_config, tmp_path):
    model = DsmhnModel(make_config())
    with pytest.raises(ModelLoadError, match="does not exist"):
        DsmhnModel.load(tmp_path / "nowhere")
    directory = tmp_path / "m"
    model.save(directory)
    (directory / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        DsmhnModel.load(directory)
    DsmhnModel(make_config(n_bits=24)).save(directory)  # weights of a 24-bit model...
    document = json.loads((directory / CONFIG_FILE).read_text())
    document["config"]["n_bits"] = 16  # ...under a 16-bit config
    (directory / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="does not match"):
        DsmhnModel.load(directory)
    (directory / CONFIG_FILE).write_text("{broken")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        DsmhnModel.load(directory)
    (directory / CONFIG_FILE).unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        DsmhnModel.load(directory)


def test_version_2_models_load_as_they_were_trained(make_config, tmp_path, squares_test):
    # Version 2 configs had no hash_norm / label_loss: they mean no norm in the hash layers and sigmoid labels.
    clips, captions, _ = squares_test
    old = DsmhnModel(make_config(hash_norm=False, label_loss="sigmoid"))
    old.save(tmp_path / "m")
    document = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    del document["config"]["hash_norm"], document["config"]["label_loss"]
    document["format_version"] = 2
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(document))
    loaded = DsmhnModel.load(tmp_path / "m")
    assert not loaded.config.hash_norm and loaded.config.label_loss == "sigmoid"
    assert np.array_equal(loaded.encode_video(clips), old.eval().encode_video(clips))
    assert np.array_equal(loaded.encode_text(captions), old.encode_text(captions))
    document["format_version"] = 1
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="format_version=1"):
        DsmhnModel.load(tmp_path / "m")


def test_hash_norm_puts_batch_norm_before_every_tanh(make_config):
    with_norm = DsmhnModel(make_config(hash_norm=True)).state_dict()
    without = DsmhnModel(make_config(hash_norm=False)).state_dict()
    norm_keys = sorted(k for k in with_norm if k not in without)
    assert {k.split(".hash.")[0] for k in norm_keys} == {"video", "image", "text"}
    assert all(".hash.norm." in k for k in norm_keys)


def test_encoder_is_a_media_encoder_built_from_its_config(tmp_path, trained_tiny, squares_test):
    model, _ = trained_tiny
    clips, captions, _ = squares_test
    model.save(tmp_path / "m")
    config = encoder_config_from_dict({"kind": "dsmhn", "model_dir": str(tmp_path / "m"), "device": "cpu"})
    assert isinstance(config, DsmhnEncoderConfig)
    encoder = build_media_encoder(config)
    assert isinstance(encoder, DsmhnEncoder) and isinstance(encoder, MediaEncoder)
    assert encoder.encoder_id.startswith("dsmhn-") and len(encoder.encoder_id) == len("dsmhn-") + 16
    assert encoder.embed_dim == 16
    assert encoder.frame_spec == FrameSpec(16, model.config.image_mean, model.config.image_std, "fit")
    assert np.array_equal(encoder.encode_clips(clips), model.encode_video(clips))
    assert np.array_equal(encoder.encode_frames(clips[:, 0]), model.encode_images(clips[:, 0]))
    assert np.array_equal(encoder.encode_text(captions), model.encode_text(captions))
    assert encoder.describe()["encoder_id"] == encoder.encoder_id
    with pytest.raises(ValueError, match="S=16"):
        encoder.encode_clips(np.zeros((1, 4, 8, 8, 3), np.uint8))


def test_a_query_with_no_known_word_is_flagged(tmp_path, trained_tiny, squares_test):
    model, _ = trained_tiny
    _, captions, _ = squares_test
    model.save(tmp_path / "m")
    encoder = build_media_encoder(encoder_config_from_dict({"kind": "dsmhn", "model_dir": str(tmp_path / "m")}))
    assert encoder.query_warnings(captions[0]) == []
    [warning] = encoder.query_warnings("zebra xylophone")
    assert "no word of the query 'zebra xylophone' is in this DSMHN model's vocabulary" in warning
    assert "results are arbitrary" in warning


def test_encoder_id_follows_the_weights(make_config, tmp_path):
    DsmhnModel(make_config()).save(tmp_path / "a")
    other = DsmhnModel(make_config())  # different random init
    other.save(tmp_path / "b")
    ids = {DsmhnEncoder(DsmhnEncoderConfig(model_dir=str(tmp_path / d), device="cpu")).encoder_id for d in "ab"}
    assert len(ids) == 2


def test_encoder_config_makes_model_dir_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DsmhnEncoderConfig(model_dir="m").model_dir == str(tmp_path / "m")
    with pytest.raises(ModelLoadError):
        DsmhnEncoder(DsmhnEncoderConfig(model_dir="m", device="cpu"))


def test_config_round_trips_through_json(make_config):
    config = make_config(video_stream="2d", w_label=2.5)
    assert DsmhnConfig.model_validate_json(config.model_dump_json()) == config
