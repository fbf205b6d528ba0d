"""The CLIP4Hashing loss (docs/papers.md §1.4): similarity regression plus cross-modal consistency.

With ``H_v``, ``H_t`` the row-normalised outputs of a batch of m pairs and ``S`` the target:

- intra = MSE(H_v H_v^T, S) + MSE(H_t H_t^T, S)
- inter = MSE(H_v H_t^T, S) + MSE(H_t H_v^T, S)
- consistency = the mean over pairs of 1 - cos(H_v,i, H_t,i) ("cosine_distance", the default), of
  ||H_v,i - H_t,i||^2 = 2 - 2 cos ("per_row", twice the default), or MSE(H_v, H_t) over m*K entries
  ("per_element", as in the repos; = per_row / K, so it fades at long codes)
- total = w_intra * intra + w_inter * inter + w_consistency * consistency
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hashing.methods.clip4hashing.config import Clip4HashingConfig


def clip4hashing_loss(
    h_video: torch.Tensor, h_text: torch.Tensor, target: torch.Tensor, config: Clip4HashingConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(total, {"intra", "inter", "consistency"})`` for paired outputs ``[m, K]`` and a target ``[m, m]``."""
    if h_video.ndim != 2 or h_video.shape != h_text.shape:
        raise ValueError(f"h_video and h_text must have the same shape [m, K], got {tuple(h_video.shape)} "
                         f"and {tuple(h_text.shape)}")
    m = h_video.shape[0]
    if target.shape != (m, m):
        raise ValueError(f"target must have shape ({m}, {m}), got {tuple(target.shape)}")
    target = target.detach().to(h_video.dtype)
    unit_video = F.normalize(h_video, dim=1)
    unit_text = F.normalize(h_text, dim=1)
    video_text = unit_video @ unit_text.T
    intra = F.mse_loss(unit_video @ unit_video.T, target) + F.mse_loss(unit_text @ unit_text.T, target)
    inter = F.mse_loss(video_text, target) + F.mse_loss(video_text.T, target)
    if config.consistency_norm == "cosine_distance":
        consistency = (1.0 - (unit_video * unit_text).sum(dim=1)).mean()
    elif config.consistency_norm == "per_element":
        consistency = F.mse_loss(unit_video, unit_text)
    else:
        consistency = (unit_video - unit_text).square().sum(dim=1).mean()
    total = config.w_intra * intra + config.w_inter * inter + config.w_consistency * consistency
    return total, {"intra": intra, "inter": inter, "consistency": consistency}
