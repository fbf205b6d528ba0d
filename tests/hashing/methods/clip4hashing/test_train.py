import numpy as np
import pytest

from hashing.methods.clip4hashing import Clip4HashingConfig, Clip4HashingTrainOptions, train_clip4hashing
from hashing.methods.clip4hashing.retrieval import cross_modal_retrieval
from synthetic_clip import SyntheticClipConfig, SyntheticClipWorld
from hashing.methods.clip4hashing.config import CCA_REGULARIZATION_CHOICES, DEFAULT_CCA_REGULARIZATION
from hashing.methods.clip4hashing.train import EPOCH_MEANS, split_by_video

WORLD = SyntheticClipWorld(SyntheticClipConfig(dim=64, semantic_dim=12, specific_dim=8, n_topics=8, seed=5))
# The paper's network on the paper's input, every pair trained on (no held-out epoch choice).
CONFIG = Clip4HashingConfig(n_bits=32, dim=64, hidden=128, input_transform="none", network="mlp")
OPTIONS = Clip4HashingTrainOptions(epochs=6, batch_size=32, device="cpu", seed=1, validation_fraction=0.0)
# The defaults: per-modality CCA input, residual network, epoch chosen on held-out pairs.
DEFAULT = Clip4HashingConfig(n_bits=32, dim=64, hidden=128)
DEFAULT_OPTIONS = Clip4HashingTrainOptions(epochs=4, batch_size=32, device="cpu", seed=1)


@pytest.fixture(scope="module")
def trained():
    pairs = WORLD.sample(150, captions_per_video=2, seed=1)
    hasher, history = train_clip4hashing(pairs.video, pairs.text, CONFIG, OPTIONS)
    return pairs, hasher, history


@pytest.fixture(scope="module")
def trained_default():
    pairs = WORLD.sample(150, captions_per_video=2, seed=1)
    hasher, history = train_clip4hashing(pairs.video, pairs.text, DEFAULT, DEFAULT_OPTIONS)
    return pairs, hasher, history


def test_history_has_one_value_per_epoch_and_the_loss_falls(trained):
    _, _, history = trained
    assert all(len(history[key]) == OPTIONS.epochs for key in EPOCH_MEANS + ("lr",))
    assert history["held_out_r1"] == [] and history["chosen_epoch"] == [OPTIONS.epochs]  # nothing held out
    assert history["total"][-1] < 0.8 * history["total"][0]
    assert history["lr"][0] == pytest.approx(0.01) and history["lr"][-1] == pytest.approx(0.001)  # step at 3/4


def test_thresholds_are_frozen_from_the_training_outputs(trained):
    pairs, hasher, _ = trained
    outputs = np.concatenate([hasher.project(pairs.video), hasher.project(pairs.text)])
    np.testing.assert_allclose(hasher.thresholds, (outputs.max(axis=0) + outputs.min(axis=0)) / 2)


@pytest.mark.parametrize("fixture", ["trained", "trained_default"])
def test_codes_retrieve_held_out_pairs_far_above_chance(fixture, request):
    _, hasher, _ = request.getfixturevalue(fixture)
    test = WORLD.sample(100, seed=2)
    metrics = cross_modal_retrieval(hasher.encode(test.video, "video"), hasher.encode(test.text, "text"),
                                    test.video_index, "hamming")
    assert metrics["t2v"]["R@10"] > 30.0 and metrics["v2t"]["R@10"] > 30.0  # chance: 10%


def test_the_kept_epoch_is_the_best_on_held_out_pairs_counting_the_start(trained_default):
    _, hasher, history = trained_default
    scores = history["held_out_r1"]
    assert len(scores) == DEFAULT_OPTIONS.epochs + 1  # the starting point, then one per epoch
    chosen = int(history["chosen_epoch"][0])
    assert scores[chosen] == max(scores) and scores.index(max(scores)) == chosen
    assert hasher.transform is not None and hasher.transform.dims == 32


def test_held_out_pairs_are_whole_videos():
    video = np.repeat(np.random.default_rng(0).standard_normal((100, 8)), 3, axis=0)  # 100 videos x 3 captions
    train, held = split_by_video(video, 0.2, np.random.default_rng(1))
    assert len(held) == 60 and len(train) == 240
    assert not {v.tobytes() for v in video[held]} & {v.tobytes() for v in video[train]}
    train, held = split_by_video(video[:60], 0.1, np.random.default_rng(1))  # 2 videos would be held out
    assert len(held) == 0 and len(train) == 60


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


def test_the_cca_ridge_is_the_choice_whose_start_scores_best_on_held_out_pairs(trained_default):
    pairs, hasher, history = trained_default
    chosen = history["cca_regularization"][0]
    assert chosen in CCA_REGULARIZATION_CHOICES
    assert hasher.settings.cca_regularization == chosen  # the saved model says which ridge it was fitted with
    starts = {}
    for ridge in CCA_REGULARIZATION_CHOICES:
        fixed = DEFAULT.model_copy(update={"cca_regularization": ridge})
        _, fixed_history = train_clip4hashing(pairs.video, pairs.text, fixed, DEFAULT_OPTIONS.model_copy(
            update={"epochs": 1}))
        assert fixed_history["cca_regularization"] == [ridge]
        starts[ridge] = fixed_history["held_out_r1"][0]
    assert history["held_out_r1"][0] == max(starts.values()) == starts[chosen]


def test_the_default_ridge_is_used_when_nothing_can_judge_the_start():
    pairs = WORLD.sample(40, captions_per_video=2, seed=2)
    _, history = train_clip4hashing(pairs.video, pairs.text, DEFAULT, DEFAULT_OPTIONS.model_copy(
        update={"epochs": 1, "validation_fraction": 0.0}))
    assert history["cca_regularization"] == [DEFAULT_CCA_REGULARIZATION]
    paper = DEFAULT.model_copy(update={"network": "mlp"})  # starts at random: the held-out pairs cannot judge it
    _, history = train_clip4hashing(pairs.video, pairs.text, paper, DEFAULT_OPTIONS.model_copy(update={"epochs": 1}))
    assert history["cca_regularization"] == [DEFAULT_CCA_REGULARIZATION]
    _, history = train_clip4hashing(pairs.video, pairs.text, CONFIG, OPTIONS.model_copy(update={"epochs": 1}))
    assert "cca_regularization" not in history  # no CCA transform


def test_a_ridge_must_be_positive_or_held_out():
    with pytest.raises(ValueError, match="positive or 'held_out'"):
        Clip4HashingConfig(n_bits=32, cca_regularization=0.0)
    with pytest.raises(ValueError):
        Clip4HashingConfig(n_bits=32, cca_regularization="best")
