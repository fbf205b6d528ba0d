"""Similarity targets built from a batch of paired CLIP embeddings (docs/papers.md §1.3).

Row i of the video batch and row i of the text batch are a pair. The "CLIP base" matrix is the
symmetrised cross-modal cosine matrix with the paired entries forced to 1; the dynamic weighting
then rescales every entry by ``w = exp(t/2 - c)``, where ``t`` in [-1, 1] is the entry's position
between the batch minimum, mean and maximum. No gradient flows through a target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Guards the piecewise normalisation when a batch has no spread (e.g. a single pair).
_EPS = 1e-12


@dataclass(frozen=True)
class BatchStatistics:
    """The batch statistics the dynamic weighting used (docs/papers.md §1.9.5: log them)."""

    mean: float
    minimum: float
    maximum: float


def cross_modal_base(video_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """``S~ = (C + C^T) / 2`` with ``C = norm(V) norm(T)^T`` and ``C_ii := 1``; ``float32 [m, m]``.

    Embeddings are cast to float32 first (fp16 CLIP features lose too much in the product).
    """
    video, text = _paired_batch(video_emb, text_emb)
    cosine = _unit_rows(video) @ _unit_rows(text).T
    cosine.fill_diagonal_(1.0)
    return 0.5 * (cosine + cosine.T)


def dynamic_weighting(base: torch.Tensor, c: float) -> tuple[torch.Tensor, BatchStatistics]:
    """Weight a base matrix by its own batch statistics; returns the target and the statistics.

    Over all m^2 entries (diagonal included): mu = mean, lo = min, hi = max;
    ``t = (S - mu) / (mu - lo)`` where ``S <= mu``, ``t = (S - mu) / (hi - mu)`` where ``S > mu``;
    ``target = clip(exp(t/2 - c) * S, -1, 1)``.
    """
    base = base.detach().to(torch.float32)
    mean, low, high = base.mean(), base.min(), base.max()
    below = (base - mean) / torch.clamp(mean - low, min=_EPS)
    above = (base - mean) / torch.clamp(high - mean, min=_EPS)
    position = torch.where(base <= mean, below, above)
    weight = torch.exp(0.5 * position - c)
    target = torch.clamp(weight * base, -1.0, 1.0)
    return target, BatchStatistics(float(mean), float(low), float(high))


def dynamic_weighting_target(video_emb: torch.Tensor, text_emb: torch.Tensor, c: float) -> torch.Tensor:
    """The CLIP4Hashing target for a batch of pairs, ``float32 [m, m]``, without gradient."""
    target, _ = dynamic_weighting(cross_modal_base(video_emb, text_emb), c)
    return target


def cosine_target(video_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """The ablation target: the CLIP base matrix itself (no weighting), ``float32 [m, m]``."""
    return cross_modal_base(video_emb, text_emb).detach()


def _paired_batch(video_emb: torch.Tensor, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    video = torch.as_tensor(video_emb).detach().to(torch.float32)
    text = torch.as_tensor(text_emb).detach().to(torch.float32)
    if video.ndim != 2 or video.shape != text.shape:
        raise ValueError(
            f"video and text batches must be paired matrices of the same shape [m, D], got "
            f"{tuple(video.shape)} and {tuple(text.shape)}"
        )
    return video, text


def _unit_rows(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows, dim=1)
