import numpy as np
import pytest
import torch

from hashing.methods.clip4hashing.minmax import binarize_np, midrange_thresholds, minmax_binarize

H = [[1.0, 5.0], [3.0, -1.0], [2.0, 0.0]]


def test_midrange_is_per_bit_mean_of_max_and_min():
    assert midrange_thresholds(torch.tensor(H)).tolist() == [2.0, 2.0]
    np.testing.assert_array_equal(midrange_thresholds(np.array(H)), [2.0, 2.0])


def test_forward_uses_batch_midrange_and_sends_ties_to_minus_one():
    codes = minmax_binarize(torch.tensor(H))
    # column 0: threshold 2 -> 1 < 2, 3 > 2, 2 == 2 (tie -> -1); column 1: threshold 2 -> 5 > 2, -1, 0 below
    assert codes.tolist() == [[-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]


def test_forward_with_frozen_thresholds_hashes_a_single_row():
    thresholds = torch.tensor([2.0, 2.0])
    assert minmax_binarize(torch.tensor([[2.5, 1.0]]), thresholds).tolist() == [[1.0, -1.0]]
    assert binarize_np(np.array([[2.5, 1.0]]), np.array([2.0, 2.0])).tolist() == [[True, False]]


def test_a_single_row_without_thresholds_is_refused():
    with pytest.raises(ValueError, match="frozen thresholds"):
        minmax_binarize(torch.tensor([[1.0, 2.0]]))


def test_backward_is_straight_through_plus_quantisation_pull():
    h = torch.tensor(H, requires_grad=True)
    gamma = 0.01
    codes = minmax_binarize(h, gamma=gamma)
    upstream = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]])
    (codes * upstream).sum().backward()
    b = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    expected = upstream + gamma * (torch.tensor(H) - b) / 6  # m * K = 3 * 2
    torch.testing.assert_close(h.grad, expected)
    # hand check of one entry: 1 + 0.01 * (1 - (-1)) / 6
    assert h.grad[0, 0].item() == pytest.approx(1 + 0.02 / 6)


def test_pull_alone_moves_outputs_towards_their_codes():
    h = torch.tensor(H, requires_grad=True)
    (minmax_binarize(h, gamma=1.0) * 0).sum().backward()
    # gradient descent step h - grad moves every entry towards its code
    stepped = (h - h.grad).detach()
    b = minmax_binarize(torch.tensor(H))
    before, after = (torch.tensor(H) - b).abs(), (stepped - b).abs()
    assert (after <= before).all() and after.sum() < before.sum()
    assert h.grad[1, 1].item() == 0.0  # h = -1 already equals its code
