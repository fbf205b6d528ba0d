"""Training-time augmentation of DSMHN inputs: clips, appearance frames and bag-of-words captions.

All randomness comes from the caller's numpy generator, so a seed reproduces a training run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hashing.methods.dsmhn.config import DsmhnTrainOptions


def shift_and_brighten(pixels: torch.Tensor, options: DsmhnTrainOptions, rng: np.random.Generator) -> torch.Tensor:
    """Random translation and brightness per clip ``[B, 3, T, S, S]`` (0..1). No flips of the clip: they
    would turn 'left' into 'right' (appearance frames get them, see ``random_orientation``); no colour
    jitter: colours are labels."""
    batch, size = pixels.shape[0], pixels.shape[-1]
    if options.augment_shift > 0:
        pad = options.augment_shift
        padded = F.pad(pixels.flatten(1, 2), (pad, pad, pad, pad), mode="replicate").view(
            *pixels.shape[:3], size + 2 * pad, size + 2 * pad)
        offsets = rng.integers(0, 2 * pad + 1, size=(batch, 2))
        pixels = torch.stack([padded[i, :, :, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets)])
    if options.augment_brightness > 0:
        scale = rng.uniform(1 - options.augment_brightness, 1 + options.augment_brightness, size=batch)
        pixels = (pixels * torch.from_numpy(scale.astype(np.float32)).to(pixels.device).view(-1, 1, 1, 1, 1)).clamp_(0, 1)
    return pixels


def random_orientation(frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each frame ``[N, C, S, S]`` turned by a random multiple of 90 degrees and mirrored or not: the 8
    symmetries of the square, uniformly. Shapes and colours keep their names under all of them; motion
    directions do not, which is why only appearance pathways get this."""
    if frames.shape[-1] != frames.shape[-2]:
        raise ValueError(f"random_orientation needs square frames, got {tuple(frames.shape[-2:])}")
    choice = rng.integers(8, size=len(frames))
    out = frames.clone()
    for symmetry in np.unique(choice):
        rows = torch.from_numpy(np.flatnonzero(choice == symmetry)).to(frames.device)
        turned = torch.rot90(frames[rows], int(symmetry) % 4, dims=(-2, -1))
        out[rows] = turned.flip(-1) if symmetry >= 4 else turned
    return out


def word_dropout(text: torch.Tensor, p: float, n_words: int | None = None) -> torch.Tensor:
    """Each bag-of-words term of ``text [B, D]`` zeroed with probability ``p`` (paraphrase robustness).

    The words are the first ``n_words`` columns (all when None); columns after them (frozen CLIP
    embeddings) are left alone.
    """
    n_words = text.shape[1] if n_words is None else n_words
    if p <= 0 or n_words == 0:
        return text
    keep = (torch.rand((text.shape[0], n_words), device=text.device) >= p).float()
    if n_words < text.shape[1]:
        keep = torch.cat([keep, keep.new_ones((text.shape[0], text.shape[1] - n_words))], dim=1)
    return text * keep
