import pytest
import torch

from hashing.methods.clip4hashing.config import Clip4HashingConfig
from hashing.methods.clip4hashing.loss import clip4hashing_loss

# Unit rows: H_v = I, H_t = both rows (1, 0). Target [[1, .5], [.5, 1]].
H_VIDEO = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
H_TEXT = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
TARGET = torch.tensor([[1.0, 0.5], [0.5, 1.0]])


def config(**changes):
    return Clip4HashingConfig(n_bits=16, **changes)


def test_terms_match_the_hand_computed_values():
    total, terms = clip4hashing_loss(H_VIDEO, H_TEXT, TARGET, config(consistency_norm="per_element"))
    # intra: H_v H_v^T = I -> (.25 + .25)/4; H_t H_t^T = all ones -> (.25 + .25)/4
    assert terms["intra"].item() == pytest.approx(0.25)
    # inter: H_v H_t^T = [[1, 1], [0, 0]] -> (0 + .25 + .25 + 1)/4, twice (the transpose gives the same)
    assert terms["inter"].item() == pytest.approx(0.75)
    # consistency: H_v - H_t = [[0, 0], [-1, 1]] -> 2 / 4 entries
    assert terms["consistency"].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(0.1 * 0.25 + 1.0 * 0.75 + 2.0 * 0.5)


def test_per_row_consistency_is_k_times_per_element():
    total, terms = clip4hashing_loss(H_VIDEO, H_TEXT, TARGET, config(consistency_norm="per_row"))
    assert terms["consistency"].item() == pytest.approx(1.0)  # rows: 0 and 2, mean 1
    assert total.item() == pytest.approx(0.025 + 0.75 + 2.0)


def test_cosine_distance_consistency_is_half_of_per_row_and_the_default():
    total, terms = clip4hashing_loss(H_VIDEO, H_TEXT, TARGET, config())
    # cos(H_v,i, H_t,i): 1 for the first pair, 0 for the second -> mean(0, 1) = 0.5
    assert config().consistency_norm == "cosine_distance"
    assert terms["consistency"].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(0.025 + 0.75 + 2.0 * 0.5)
    _, per_row = clip4hashing_loss(H_VIDEO, H_TEXT, TARGET, config(consistency_norm="per_row"))
    assert per_row["consistency"].item() == pytest.approx(2 * terms["consistency"].item())


def test_cosine_distance_ignores_output_scale():
    _, terms = clip4hashing_loss(5 * H_VIDEO, 0.2 * H_TEXT, TARGET, config())
    assert terms["consistency"].item() == pytest.approx(0.5)


def test_weights_are_configurable_and_outputs_are_row_normalised():
    cfg = config(w_intra=1.0, w_inter=0.0, w_consistency=0.0)
    total, _ = clip4hashing_loss(3 * H_VIDEO, 0.1 * H_TEXT, TARGET, cfg)
    assert total.item() == pytest.approx(0.25)


def test_gradient_flows_to_outputs_not_to_target():
    h_video = torch.randn(4, 16, requires_grad=True)
    target = torch.rand(4, 4, requires_grad=True)
    total, _ = clip4hashing_loss(h_video, torch.randn(4, 16), target, config())
    total.backward()
    assert h_video.grad is not None and target.grad is None


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match="same shape"):
        clip4hashing_loss(torch.ones(2, 4), torch.ones(3, 4), TARGET, config())
    with pytest.raises(ValueError, match="target must have shape"):
        clip4hashing_loss(torch.ones(3, 4), torch.ones(3, 4), TARGET, config())
