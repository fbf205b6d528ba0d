import math

import pytest
import torch

from hashing.methods.clip4hashing.weighting import (
    cosine_target,
    cross_modal_base,
    dynamic_weighting,
    dynamic_weighting_target,
)

# Two pairs: C = V T^T = [[1, 0.6], [0, 0.8]] -> diagonal forced to 1 -> symmetrised [[1, .3], [.3, 1]].
VIDEO = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TEXT = torch.tensor([[1.0, 0.0], [0.6, 0.8]])


def test_base_is_symmetrised_cross_modal_cosine_with_unit_diagonal():
    torch.testing.assert_close(cross_modal_base(VIDEO, TEXT), torch.tensor([[1.0, 0.3], [0.3, 1.0]]))
    # rows are L2-normalised first: scaling an embedding changes nothing
    torch.testing.assert_close(cross_modal_base(3 * VIDEO, 0.5 * TEXT), torch.tensor([[1.0, 0.3], [0.3, 1.0]]))
    torch.testing.assert_close(cosine_target(VIDEO, TEXT), torch.tensor([[1.0, 0.3], [0.3, 1.0]]))


def test_two_pair_target_for_both_published_constants():
    # mu = 0.65, min = 0.3, max = 1: the 0.3 entries sit at t = -1, the diagonal at t = +1.
    karte0 = dynamic_weighting_target(VIDEO, TEXT, c=0.5)
    off = 0.3 * math.exp(-0.5 - 0.5)
    torch.testing.assert_close(karte0, torch.tensor([[1.0, off], [off, 1.0]]))
    tytsp26 = dynamic_weighting_target(VIDEO, TEXT, c=0.0)
    off = 0.3 * math.exp(-0.5)
    # diagonal: exp(0.5) * 1 = 1.65 is clipped to 1
    torch.testing.assert_close(tytsp26, torch.tensor([[1.0, off], [off, 1.0]]))


def test_piecewise_position_above_and_below_the_mean():
    base = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, -0.1], [0.2, -0.1, 1.0]])
    target, stats = dynamic_weighting(base, c=0.5)
    mean = (3 + 2 * (0.5 + 0.2 - 0.1)) / 9  # 0.4667
    assert stats.mean == pytest.approx(mean)
    assert (stats.minimum, stats.maximum) == (pytest.approx(-0.1), pytest.approx(1.0))
    t_05 = (0.5 - mean) / (1.0 - mean)  # above the mean: divide by (max - mean)
    t_02 = (0.2 - mean) / (mean + 0.1)  # below the mean: divide by (mean - min)
    expected = torch.tensor(
        [
            [1.0, 0.5 * math.exp(t_05 / 2 - 0.5), 0.2 * math.exp(t_02 / 2 - 0.5)],
            [0.5 * math.exp(t_05 / 2 - 0.5), 1.0, -0.1 * math.exp(-1.0)],
            [0.2 * math.exp(t_02 / 2 - 0.5), -0.1 * math.exp(-1.0), 1.0],
        ]
    )
    torch.testing.assert_close(target, expected)
    assert target[0, 1].item() == pytest.approx(0.312892, abs=1e-6)  # by hand: t = 0.0625, 0.5 * exp(-0.46875)


def test_target_has_no_gradient_and_a_batch_without_spread_is_finite():
    video = torch.randn(4, 8, requires_grad=True)
    target = dynamic_weighting_target(video, torch.randn(4, 8), c=0.5)
    assert not target.requires_grad
    single = dynamic_weighting_target(torch.ones(1, 3), torch.ones(1, 3), c=0.5)
    assert torch.isfinite(single).all() and single.item() == pytest.approx(math.exp(-0.5))


def test_fp16_inputs_are_cast_and_mismatched_batches_refused():
    assert dynamic_weighting_target(VIDEO.half(), TEXT.half(), c=0.5).dtype == torch.float32
    with pytest.raises(ValueError, match="same shape"):
        dynamic_weighting_target(torch.ones(2, 3), torch.ones(3, 3), c=0.5)
