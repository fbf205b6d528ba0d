"""The DSMHN objective: inter-modality similarity, label preservation, quantisation and bit balance.

Codes ``u`` (vision) and ``v`` (text) are the tanh outputs of the streams, ``[B, K]`` in (-1, 1).
Normalisation (so the weights do not depend on batch size or code length where that is possible):

- similarity: mean over all B x B cross-modal pairs of the negative log-likelihood (nats per pair);
- label: mean over items of the summed sigmoid cross-entropy over labels (nats per item); with label groups,
  each group's softmax cross-entropy replaces the sigmoid terms of its labels;
- quantisation: mean over items and bits of (u - sign(u))^2, in [0, 1];
- bit balance: mean over bits of (batch mean of the bit)^2, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn


class LossWeightsLike(Protocol):
    w_similarity: float
    w_label: float
    w_quantization: float
    w_balance: float
    similarity: Literal["any", "cosine"]
    label_loss: Literal["sigmoid", "grouped"]


LabelGroups = Sequence[Sequence[int]]


def label_groups(labels: Sequence[str]) -> list[list[int]]:
    """Column indices of the labels named ``group:value``, one list per group of two or more labels.

    The sample collection's ``shape:circle`` … ``shape:diamond`` form one group: every video has one of
    them per object, so a softmax over the group says "which shape" in one decision.
    """
    by_group: dict[str, list[int]] = {}
    for column, label in enumerate(labels):
        group, separator, value = label.partition(":")
        if separator and group and value:
            by_group.setdefault(group, []).append(column)
    return [columns for columns in by_group.values() if len(columns) > 1]


def label_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor,
                     kind: Literal["any", "cosine"] = "any") -> torch.Tensor:
    """``float [A, B]`` similarity of multi-hot labels: 1 if a pair shares a label ("any"), or label cosine."""
    a, b = labels_a.float(), labels_b.float()
    overlap = a @ b.T
    if kind == "any":
        return (overlap > 0).float()
    if kind == "cosine":
        norms = a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True).T
        return torch.where(norms > 0, overlap / norms.clamp_min(1e-12), torch.zeros_like(overlap))
    raise ValueError(f"similarity kind must be 'any' or 'cosine', got {kind!r}")


def pairwise_likelihood_loss(u: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of -[s_ij * theta_ij - log(1 + e^theta_ij)], theta_ij = u_i . v_j / 2 (DPSH/DCMH).

    ``s`` may be graded in [0, 1] (then it is a soft-target cross-entropy). softplus keeps it finite
    for any theta.
    """
    if s.shape != (u.shape[0], v.shape[0]):
        raise ValueError(f"similarity must have shape {(u.shape[0], v.shape[0])}, got {tuple(s.shape)}")
    theta = 0.5 * (u @ v.T)
    return (F.softplus(theta) - s * theta).mean()


def label_preservation_loss(codes: torch.Tensor, labels: torch.Tensor, classifier: nn.Module,
                            groups: LabelGroups = ()) -> torch.Tensor:
    """Cross-entropy of ``classifier(codes)`` against multi-hot labels, per item: summed over labels.

    Labels outside ``groups``: one sigmoid cross-entropy each. Each group: a softmax cross-entropy
    over its labels against the item's positives in it, shared equally (two objects of different
    shapes: half each); an item with no positive in a group adds nothing for that group.
    """
    logits = classifier(codes)
    targets = labels.float()
    if not groups:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1).mean()
    ungrouped = torch.ones(targets.shape[1], dtype=torch.bool, device=targets.device)
    ungrouped[[column for group in groups for column in group]] = False
    per_item = F.binary_cross_entropy_with_logits(logits[:, ungrouped], targets[:, ungrouped],
                                                  reduction="none").sum(dim=1)
    for group in groups:
        columns = list(group)
        group_targets = targets[:, columns]
        share = group_targets / group_targets.sum(dim=1, keepdim=True).clamp_min(1.0)
        per_item = per_item - (share * F.log_softmax(logits[:, columns], dim=1)).sum(dim=1)
    return per_item.mean()


def quantization_loss(u: torch.Tensor) -> torch.Tensor:
    """Mean of (u - sign(u))^2: how far the relaxed codes are from binary (sign is treated as a constant)."""
    return (u - torch.sign(u).detach()).pow(2).mean()


def bit_balance_loss(u: torch.Tensor) -> torch.Tensor:
    """Mean over bits of the squared batch mean: 0 when every bit is +1 on half of the batch."""
    return u.mean(dim=0).pow(2).mean()


def dsmhn_loss(video_codes: torch.Tensor, text_codes: torch.Tensor, labels: torch.Tensor, classifier: nn.Module,
               config: LossWeightsLike, groups: LabelGroups = ()) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total and the unweighted terms (floats) for one batch of paired vision/text codes.

    Row i of both code matrices is the same item; ``labels`` is its multi-hot label row. The
    classifier is shared by both modalities, so both code spaces must predict labels the same way.
    ``groups``: the label groups of ``label_preservation_loss`` (used when ``config.label_loss`` is
    "grouped").
    """
    if video_codes.shape != text_codes.shape:
        raise ValueError(f"vision and text codes must have the same shape, got {tuple(video_codes.shape)} "
                         f"and {tuple(text_codes.shape)}")
    if labels.shape[0] != video_codes.shape[0]:
        raise ValueError(f"labels have {labels.shape[0]} rows for {video_codes.shape[0]} codes")
    similarity = label_similarity(labels, labels, config.similarity)
    groups = groups if config.label_loss == "grouped" else ()
    terms = {
        "similarity": pairwise_likelihood_loss(video_codes, text_codes, similarity),
        "label": label_preservation_loss(video_codes, labels, classifier, groups)
        + label_preservation_loss(text_codes, labels, classifier, groups),
        "quantization": quantization_loss(video_codes) + quantization_loss(text_codes),
        "balance": bit_balance_loss(video_codes) + bit_balance_loss(text_codes),
    }
    total = (
        config.w_similarity * terms["similarity"]
        + config.w_label * terms["label"]
        + config.w_quantization * terms["quantization"]
        + config.w_balance * terms["balance"]
    )
    return total, {name: float(value.detach()) for name, value in terms.items()}
