import numpy as np
import pytest

from hashing.bits import pack_bits
from hashing.evaluation import label_relevance, mean_average_precision, rank_matrix_hamming
from hashing.methods.dsmhn import DsmhnModel, train_dsmhn

MOTION = np.array([False, False, False, True, True])  # the motion:* columns of conftest.LABELS


def hamming_map(query, gallery, query_labels, gallery_labels, columns=None):
    if columns is not None:
        query_labels, gallery_labels = query_labels[:, columns], gallery_labels[:, columns]
    order = rank_matrix_hamming(pack_bits(query > 0), pack_bits(gallery > 0))
    return mean_average_precision(order, label_relevance(query_labels, gallery_labels, "exact"))


def chance_map(labels, columns=None, seeds=20):
    rng = np.random.default_rng(0)
    return np.mean([hamming_map(rng.standard_normal((len(labels), 16)), rng.standard_normal((len(labels), 16)),
                                labels, labels, columns) for _ in range(seeds)])


def test_training_reduces_the_loss_and_beats_chance_on_held_out(trained_tiny, squares_test):
    model, history = trained_tiny
    assert isinstance(model, DsmhnModel) and not model.training
    assert set(history) == {"total", "similarity", "label", "quantization", "balance", "image"}
    assert all(len(values) == 25 for values in history.values())
    assert history["total"][-1] < 0.75 * history["total"][0]
    clips, captions, labels = squares_test
    video, text = model.encode_video(clips), model.encode_text(captions)
    chance = chance_map(labels)  # about 0.25 (6 label sets)
    assert hamming_map(text, video, labels, labels) > chance + 0.3
    assert hamming_map(video, text, labels, labels) > chance + 0.3


def test_three_d_stream_sees_motion_direction_where_mean_pooled_2d_cannot(
        squares_train, squares_test, make_config, make_options):
    clips, captions, labels = squares_train
    test_clips, test_captions, test_labels = squares_test
    scores = {}
    for stream in ("3d", "2d"):
        config = make_config(video_stream=stream, w_image=0.0)
        model, _ = train_dsmhn(clips, captions, labels, config, make_options(epochs=40))
        video, text = model.encode_video(test_clips), model.encode_text(test_captions)
        scores[stream] = hamming_map(text, video, test_labels, test_labels, MOTION)
    chance = chance_map(test_labels, MOTION)  # about 0.5 (left or right)
    assert scores["3d"] > 0.8
    assert scores["3d"] > scores["2d"] + 0.2
    assert scores["2d"] < chance + 0.2


def test_training_is_deterministic_for_a_seed(squares_train, make_config, make_options):
    clips, captions, labels = squares_train
    runs = [train_dsmhn(clips, captions, labels, make_config(), make_options(epochs=2)) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][0].encode_video(clips), runs[1][0].encode_video(clips))
    other, _ = train_dsmhn(clips, captions, labels, make_config(), make_options(epochs=2, seed=1))
    assert not np.array_equal(other.encode_video(clips), runs[0][0].encode_video(clips))


def test_alternative_captions_per_row(squares_train, make_config, make_options):
    clips, captions, labels = squares_train
    alternatives = [[caption, caption.replace("square", "block")] for caption in captions]
    _, history = train_dsmhn(clips, alternatives, labels, make_config(), make_options(epochs=1))
    assert len(history["total"]) == 1 and np.isfinite(history["total"][0])


def test_input_errors(squares_train, make_config, make_options):
    clips, captions, labels = squares_train
    config, options = make_config(), make_options(epochs=1)
    with pytest.raises(ValueError, match="S=16"):
        train_dsmhn(clips[:, :, :8, :8], captions, labels, config, options)
    with pytest.raises(ValueError, match="one caption"):
        train_dsmhn(clips, captions[:-1], labels, config, options)
    with pytest.raises(ValueError, match="columns"):
        train_dsmhn(clips, captions, labels[:, :3], config, options)
    with pytest.raises(ValueError, match="at least 2"):
        train_dsmhn(clips[:1], captions[:1], labels[:1], config, options)
