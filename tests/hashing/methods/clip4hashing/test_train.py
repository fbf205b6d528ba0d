import numpy as np
import pytest

from hashing.methods.clip4hashing import Clip4HashingConfig, Clip4HashingTrainOptions, train_clip4hashing
from hashing.methods.clip4hashing.retrieval import cross_modal_retrieval
from hashing.methods.clip4hashing.synthetic import SyntheticClipConfig, SyntheticClipWorld
from hashing.methods.clip4hashing.train import HISTORY_KEYS

WORLD = SyntheticClipWorld(SyntheticClipConfig(dim=64, semantic_dim=12, specific_dim=8, n_topics=8, seed=5))
CONFIG = Clip4HashingConfig(n_bits=32, dim=64, hidden=128)
OPTIONS = Clip4HashingTrainOptions(epochs=6, batch_size=32, device="cpu", seed=1)


@pytest.fixture(scope="module")
def trained():
    pairs = WORLD.sample(150, captions_per_video=2, seed=1)
    hasher, history = train_clip4hashing(pairs.video, pairs.text, CONFIG, OPTIONS)
    return pairs, hasher, history


def test_history_has_one_value_per_epoch_and_the_loss_falls(trained):
    _, _, history = trained
    assert set(history) == set(HISTORY_KEYS)
    assert all(len(values) == OPTIONS.epochs for values in history.values())
    assert history["total"][-1] < 0.8 * history["total"][0]
    assert history["lr"][0] == pytest.approx(0.01) and history["lr"][-1] == pytest.approx(0.001)  # step at 3/4


def test_thresholds_are_frozen_from_the_training_outputs(trained):
    pairs, hasher, _ = trained
    outputs = np.concatenate([hasher.project(pairs.video), hasher.project(pairs.text)])
    np.testing.assert_allclose(hasher.thresholds, (outputs.max(axis=0) + outputs.min(axis=0)) / 2)


def test_codes_retrieve_held_out_pairs_far_above_chance(trained):
    _, hasher, _ = trained
    test = WORLD.sample(100, seed=2)
    metrics = cross_modal_retrieval(hasher.encode(test.video), hasher.encode(test.text), test.video_index, "hamming")
    assert metrics["t2v"]["R@10"] > 30.0 and metrics["v2t"]["R@10"] > 30.0  # chance: 10%


def test_training_is_reproducible_from_the_seed(trained):
    pairs, hasher, history = trained
    again, history_again = train_clip4hashing(pairs.video, pairs.text, CONFIG, OPTIONS)
    assert history_again["total"] == history["total"]
    np.testing.assert_array_equal(again.thresholds, hasher.thresholds)


def test_codes_loss_mode_trains_through_the_minmax_layer():
    pairs = WORLD.sample(40, seed=3)
    options = Clip4HashingTrainOptions(epochs=2, batch_size=16, device="cpu")
    _, history = train_clip4hashing(pairs.video, pairs.text, CONFIG.model_copy(update={"loss_on": "codes"}), options)
    assert np.isfinite(history["total"]).all()


def test_bad_inputs_are_explained():
    video = np.zeros((4, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="row-aligned"):
        train_clip4hashing(video, video[:3], CONFIG, OPTIONS)
    with pytest.raises(ValueError, match="dim=64"):
        train_clip4hashing(np.zeros((4, 32)), np.zeros((4, 32)), CONFIG, OPTIONS)
