"""Text-to-video and video-to-text R@K / MdR with expected-rank tie handling, for codes or floats.

A caption has exactly one relevant video; a video is relevant to all of its captions and counts as
found at the rank of its best-ranked caption (the usual practice for MSVD-style data, docs/papers.md
§3.1). Ties follow the expected-rank policy documented in ``hashing/evaluation.py`` (the
``tie_expected`` numbers there), generalised to several relevant items: with ``c`` items strictly
closer than the best relevant one and ``T`` items tied at its distance, ``r`` of them relevant, the
first relevant item's expected rank under uniformly random tie-breaking is ``c + (T + 1)/(r + 1)``
and ``P(rank <= K) = 1 - C(T - r, K - c) / C(T, K - c)``. With one relevant item this is exactly
``c + (T + 1)/2`` and ``(K - c)/T``. R@K is the mean of that probability (percent); MdR and MnR
are the median and mean of the expected ranks (so MdR can end in .5).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hashing.bits import hamming_distances

RECALL_KS = (1, 5, 10)
TIE_POLICY = (
    "expected rank under uniformly random tie-breaking (hashing/evaluation.py 'tie_expected'): "
    "rank = #strictly closer + (#tied + 1)/(#relevant tied + 1)"
)
# About this many [queries, gallery] elements per chunk.
_CHUNK_ELEMENTS = 1 << 22

Space = Literal["hamming", "cosine"]


def expected_first_relevant(
    distances: np.ndarray, relevance: np.ndarray, ks: tuple[int, ...] = RECALL_KS
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Expected 1-based rank of the first relevant item per query and ``P(rank <= k)`` per k.

    ``distances [Q, N]``: smaller is closer. ``relevance bool [Q, N]``: every query needs one.
    """
    distances, relevance = np.asarray(distances), np.asarray(relevance, dtype=bool)
    if distances.shape != relevance.shape or distances.ndim != 2:
        raise ValueError(f"distances and relevance must be matching [Q, N] arrays, got {distances.shape}, {relevance.shape}")
    if not relevance.any(axis=1).all():
        raise ValueError("every query needs at least one relevant gallery item")
    # Distance of the best-ranked relevant item; irrelevant entries are masked with a larger value.
    best = np.where(relevance, distances, distances.max() + 1).min(axis=1)[:, None]
    closer = (distances < best).sum(axis=1).astype(np.float64)
    at_best = distances == best
    tied = at_best.sum(axis=1).astype(np.float64)
    tied_relevant = (at_best & relevance).sum(axis=1).astype(np.float64)
    expected_rank = closer + (tied + 1.0) / (tied_relevant + 1.0)
    hits: dict[int, np.ndarray] = {}
    for k in ks:
        slots = np.clip(k - closer, 0.0, None)  # positions inside the tied group that are within the top k
        miss = np.ones_like(closer)
        for i in range(int(k)):
            # Probability that tied position i + 1 also holds an irrelevant item, given the earlier ones did.
            factor = np.clip((tied - tied_relevant - i) / np.maximum(tied - i, 1.0), 0.0, 1.0)
            miss = np.where(i < slots, miss * factor, miss)
        hits[k] = 1.0 - miss
    return expected_rank, hits


def cross_modal_retrieval(
    videos: np.ndarray, texts: np.ndarray, video_of_text: np.ndarray, space: Space
) -> dict[str, dict[str, float]]:
    """``{"t2v": summary, "v2t": summary}`` with R@1/5/10 (percent), MdR and MnR.

    ``videos [V, ...]`` and ``texts [T, ...]`` are packed codes (``space="hamming"``) or float
    embeddings (``"cosine"``); ``video_of_text[t]`` is the row of the video caption t describes.
    Videos without a caption are not used as queries (they stay in the gallery).
    """
    videos, texts = np.asarray(videos), np.asarray(texts)
    video_of_text = np.asarray(video_of_text)
    if video_of_text.shape != (len(texts),) or not np.issubdtype(video_of_text.dtype, np.integer):
        raise ValueError(f"video_of_text must be {len(texts)} integer video rows, got {video_of_text.dtype} {video_of_text.shape}")
    if len(texts) == 0 or video_of_text.min() < 0 or video_of_text.max() >= len(videos):
        raise ValueError(f"video_of_text must index the {len(videos)} videos")
    distance = _distance_function(space, videos, texts)
    text_to_video = _summary(distance, texts, videos, lambda rows: video_of_text[rows][:, None] == np.arange(len(videos)))
    queried = np.unique(video_of_text)
    video_to_text = _summary(
        distance, videos[queried], texts, lambda rows: queried[rows][:, None] == video_of_text[None, :]
    )
    return {"t2v": text_to_video, "v2t": video_to_text}


def _distance_function(space: Space, videos: np.ndarray, texts: np.ndarray):
    if space == "hamming":
        if videos.dtype != np.uint8 or texts.dtype != np.uint8 or videos.shape[1] != texts.shape[1]:
            raise ValueError("hamming space needs packed uint8 codes of the same length for videos and texts")
        return hamming_distances
    if space == "cosine":
        def negative_cosine(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
            return -(_unit(queries) @ _unit(gallery).T)
        return negative_cosine
    raise ValueError(f"space must be 'hamming' or 'cosine', got {space!r}")


def _summary(distance, queries: np.ndarray, gallery: np.ndarray, relevance_of) -> dict[str, float]:
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(gallery)))
    ranks, hits = [], {k: [] for k in RECALL_KS}
    for start in range(0, len(queries), chunk):
        rows = np.arange(start, min(start + chunk, len(queries)))
        rank, hit = expected_first_relevant(distance(queries[rows], gallery), relevance_of(rows))
        ranks.append(rank)
        for k in RECALL_KS:
            hits[k].append(hit[k])
    all_ranks = np.concatenate(ranks)
    summary = {f"R@{k}": float(100.0 * np.concatenate(hits[k]).mean()) for k in RECALL_KS}
    summary["MdR"] = float(np.median(all_ranks))
    summary["MnR"] = float(all_ranks.mean())
    return summary


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)
