"""The min-max hashing layer (docs/papers.md §1.5).

Forward: ``b_ik = +1 if h_ik > theta_k else -1`` with the per-bit mid-range threshold
``theta_k = (max_i h_ik + min_i h_ik) / 2`` of the batch, or given (frozen) thresholds. A value
exactly at the threshold becomes -1, the project's convention ("a bit is 1 only when strictly
above", as for LSH/ITQ; tytsp26 does the same).

Backward: straight-through plus a quantisation pull, ``dL/dh = dL/db + gamma (h - b) / (m K)``,
the gradient of ``gamma / (2 m K) ||h - b||^2``. The thresholds get no gradient.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def midrange_thresholds(h: ArrayT) -> ArrayT:
    """Per-bit mid-range ``(max + min) / 2`` over the rows of ``h [m, K]``; ``[K]``, same type as ``h``."""
    if h.ndim != 2 or h.shape[0] == 0:
        raise ValueError(f"need a non-empty matrix of outputs [m, K], got shape {tuple(h.shape)}")
    if isinstance(h, torch.Tensor):
        return 0.5 * (h.amax(dim=0) + h.amin(dim=0))
    return 0.5 * (h.max(axis=0) + h.min(axis=0))


def binarize_np(h: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean bits ``h > thresholds`` (``True`` = +1), the numpy twin of the layer's forward."""
    return np.asarray(h) > np.asarray(thresholds)[None, :]


class _MinMaxBinarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, thresholds: torch.Tensor, gamma: float) -> torch.Tensor:
        codes = torch.where(h > thresholds, 1.0, -1.0).to(h.dtype)
        ctx.save_for_backward(h, codes)
        ctx.gamma = gamma
        return codes

    @staticmethod
    def backward(ctx: Any, grad_codes: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        h, codes = ctx.saved_tensors
        pull = ctx.gamma * (h - codes) / h.numel()  # numel = m * K
        return grad_codes + pull, None, None


def minmax_binarize(
    h: torch.Tensor, thresholds: torch.Tensor | None = None, gamma: float = 0.01
) -> torch.Tensor:
    """Codes in {-1, +1} ``[m, K]`` from outputs ``h [m, K]``; differentiable (see module doc).

    Without ``thresholds`` the batch's own mid-range is used, which needs at least two rows: a single
    row is its own max and min, so hash single queries with frozen thresholds.
    """
    if h.ndim != 2:
        raise ValueError(f"h must be a matrix [m, K], got shape {tuple(h.shape)}")
    if thresholds is None:
        if h.shape[0] < 2:
            raise ValueError(
                "the min-max layer needs at least 2 rows to take batch statistics; pass frozen thresholds "
                "to binarise a single row"
            )
        thresholds = midrange_thresholds(h.detach())
    thresholds = torch.as_tensor(thresholds, dtype=h.dtype, device=h.device).detach()
    if thresholds.shape != (h.shape[1],):
        raise ValueError(f"thresholds must have shape ({h.shape[1]},), got {tuple(thresholds.shape)}")
    return _MinMaxBinarize.apply(h, thresholds, float(gamma))
