import numpy as np
import pytest
import torch

from hashing.methods.dsmhn.augment import random_orientation, word_dropout


def symmetries(frame: torch.Tensor) -> list[torch.Tensor]:
    turns = [torch.rot90(frame, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_random_orientation_gives_each_frame_one_of_the_eight_symmetries_of_the_square():
    frames = torch.arange(200 * 2 * 3 * 3, dtype=torch.float32).view(200, 2, 3, 3)
    out = random_orientation(frames, np.random.default_rng(0))
    assert out.shape == frames.shape
    seen = set()
    for before, after in zip(frames, out):
        matches = [k for k, candidate in enumerate(symmetries(before)) if torch.equal(candidate, after)]
        assert len(matches) == 1  # an asymmetric 3x3 pattern: exactly one symmetry matches
        seen.add(matches[0])
    assert seen == set(range(8))  # all eight occur over 200 draws
    assert torch.equal(frames[0], torch.arange(18, dtype=torch.float32).view(2, 3, 3))  # input untouched


def test_random_orientation_is_reproducible_for_a_seed_and_needs_square_frames():
    frames = torch.randn(16, 3, 5, 5)
    first = random_orientation(frames, np.random.default_rng(3))
    assert torch.equal(first, random_orientation(frames, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="square"):
        random_orientation(torch.zeros(2, 3, 4, 5), np.random.default_rng(0))


def test_word_dropout_zeroes_terms_and_keeps_the_rest():
    torch.manual_seed(0)
    bow = torch.ones(50, 40)
    dropped = word_dropout(bow, 0.25)
    assert set(dropped.unique().tolist()) == {0.0, 1.0}
    assert 0.15 < float((dropped == 0).float().mean()) < 0.35
    assert word_dropout(bow, 0.0) is bow
