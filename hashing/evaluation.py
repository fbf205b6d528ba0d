"""Retrieval metrics for hash codes, side by side with the float (cosine) features they came from.

Tie policy. Hamming distances are small integers, so many gallery items tie, and the tie policy
changes R@K and mAP (most at 16-128 bits). Every ranking here is a *stable* sort by
(distance, gallery position): Hamming ascending, cosine similarity descending, equal scores keep
the gallery's own row order. The gallery order is the order of the arrays passed in — callers keep
it fixed and documented (the pipeline uses catalog order: video_id, clip_idx) so numbers are
reproducible. Because a stable sort can still favour a target that happens to sit early in the
gallery, ``evaluate_retrieval`` also reports ``tie_expected``: R@K and mean rank under uniformly
random tie-breaking, where rank = #strictly closer + (#tied + 1) / 2.

Conventions: ranks are 1-based; R@K is a percentage (0..100) like the literature; mAP is mAP@all
with Z = the number of relevant gallery items; queries without any relevant item are left out of
mAP, P@K and the PR curve and counted in ``n_queries_without_relevant``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from hashing.bits import hamming_distances

RECALL_KS = (1, 5, 10)

# Query rows processed together in evaluate_retrieval / pr_curve_hamming: about this many
# [chunk, N] elements, so 10k x 10k runs in a few hundred MB.
_CHUNK_ELEMENTS = 1 << 22


# --- rankings ---------------------------------------------------------------------------------


def rank_matrix_hamming(q_packed: np.ndarray, g_packed: np.ndarray) -> np.ndarray:
    """Gallery indices in rank order, ``int64 [Q, N]``: Hamming ascending, ties by position."""
    return _stable_order_by_distance(hamming_distances(q_packed, g_packed))


def rank_matrix_cosine(q_float: np.ndarray, g_float: np.ndarray) -> np.ndarray:
    """Gallery indices in rank order, ``int64 [Q, N]``: cosine descending, ties by position."""
    return _stable_order_by_similarity(cosine_similarity(q_float, g_float))


def cosine_similarity(q_float: np.ndarray, g_float: np.ndarray) -> np.ndarray:
    """``float32 [Q, N]`` cosine similarities (rows are L2-normalised here)."""
    return _normalize(q_float, "q_float") @ _normalize(g_float, "g_float").T


def ranks_of_targets(order: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of ``targets[q]`` in ``order[q]``, ``int64 [Q]``."""
    order = np.asarray(order)
    targets = _as_targets(targets, order.shape[0], None)
    hits = order == targets[:, None]
    if not hits.any(axis=1).all():
        missing = int(np.flatnonzero(~hits.any(axis=1))[0])
        raise ValueError(f"target {targets[missing]} of query {missing} is not in its ranking: pass full rankings")
    return np.argmax(hits, axis=1).astype(np.int64) + 1


# --- metrics ----------------------------------------------------------------------------------


def recall_summary(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (percent), median rank and mean rank from 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError("ranks must be a non-empty 1-D array of 1-based ranks")
    summary = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in RECALL_KS}
    summary["MdR"] = float(np.median(ranks))
    summary["MnR"] = float(np.mean(ranks))
    return summary


def average_precisions(order: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """AP@all per query, ``float64 [Q]``; NaN for queries with no relevant item."""
    ranked = _ranked_relevance(order, relevance)
    hits = np.cumsum(ranked, axis=1, dtype=np.int32)
    positions = np.arange(1, ranked.shape[1] + 1, dtype=np.float64)
    precision_sum = np.sum(np.where(ranked, hits / positions, 0.0), axis=1)
    n_relevant = hits[:, -1] if ranked.shape[1] else np.zeros(ranked.shape[0], dtype=np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, precision_sum / n_relevant, np.nan)


def mean_average_precision(order: np.ndarray, relevance: np.ndarray) -> float:
    """mAP@all (Z = number of relevant items); queries with no relevant item are excluded."""
    aps = average_precisions(order, relevance)
    if np.isnan(aps).all():
        raise ValueError("no query has a relevant gallery item: mAP is undefined")
    return float(np.nanmean(aps))


def precision_at_k(order: np.ndarray, relevance: np.ndarray, ks: Iterable[int]) -> dict[int, float]:
    """Mean fraction of relevant items in the top K, for each K <= N (larger K are left out).

    Queries with no relevant item are excluded, as in :func:`mean_average_precision`.
    """
    per_query = _precision_at_k_per_query(order, relevance, ks)
    answerable = np.asarray(relevance, dtype=bool).any(axis=1)
    if not answerable.any():
        raise ValueError("no query has a relevant gallery item: P@K is undefined")
    return {k: float(values[answerable].mean()) for k, values in per_query.items()}


def pr_curve_hamming(q_packed: np.ndarray, g_packed: np.ndarray, relevance: np.ndarray) -> dict[str, list]:
    """Precision and recall of "everything within Hamming radius r", for r = 0..n_bits.

    Per query: precision = relevant retrieved / retrieved, recall = relevant retrieved / relevant;
    both averaged over queries that have a relevant item, precision only over those that retrieve
    something at that radius (``None`` where no query does).
    """
    q_packed, g_packed = np.asarray(q_packed), np.asarray(g_packed)
    relevance = np.asarray(relevance, dtype=bool)
    if relevance.shape != (q_packed.shape[0], g_packed.shape[0]):
        raise ValueError(f"relevance must have shape [Q, N] = {(q_packed.shape[0], g_packed.shape[0])}")
    curve = _PrCurve(n_bits=g_packed.shape[1] * 8)
    for rows in _query_chunks(q_packed.shape[0], g_packed.shape[0]):
        curve.add(hamming_distances(q_packed[rows], g_packed), relevance[rows])
    return curve.result()


def label_relevance(
    q_labels: np.ndarray, g_labels: np.ndarray, rule: Literal["any", "exact"] = "any"
) -> np.ndarray:
    """``bool [Q, N]`` relevance from labels.

    Multi-hot ``[Q, L]`` / ``[N, L]`` arrays: ``"any"`` = at least one shared label (the usual
    cross-modal hashing rule), ``"exact"`` = the same label set. 1-D integer class ids are also
    accepted (relevant = same class). Items with no label are relevant to nothing.
    """
    q_labels, g_labels = np.asarray(q_labels), np.asarray(g_labels)
    if rule not in ("any", "exact"):
        raise ValueError(f"rule must be 'any' or 'exact', got {rule!r}")
    if q_labels.ndim == 1 and g_labels.ndim == 1:
        return q_labels[:, None] == g_labels[None, :]
    if q_labels.ndim != 2 or g_labels.ndim != 2 or q_labels.shape[1] != g_labels.shape[1]:
        raise ValueError(
            f"labels must be multi-hot [Q, L] and [N, L] with the same L, got {q_labels.shape} and {g_labels.shape}"
        )
    q_hot, g_hot = q_labels.astype(bool), g_labels.astype(bool)
    # Exact integer overlap counts via float32 matmul (exact for counts < 2**24).
    overlap = q_hot.astype(np.float32) @ g_hot.astype(np.float32).T
    if rule == "any":
        return overlap > 0
    q_count = q_hot.sum(axis=1)[:, None]
    g_count = g_hot.sum(axis=1)[None, :]
    return (overlap == q_count) & (overlap == g_count) & (q_count > 0)


def evaluate_retrieval(
    query_codes: np.ndarray,
    gallery_codes: np.ndarray,
    query_float: np.ndarray | None,
    gallery_float: np.ndarray | None,
    targets: np.ndarray | None = None,
    query_labels: np.ndarray | None = None,
    gallery_labels: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10, 20, 50, 100),
    label_rule: Literal["any", "exact"] = "any",
) -> dict[str, Any]:
    """Hash vs float retrieval metrics as a JSON-able dict.

    ``targets[q]`` is the gallery row paired with query q (caption benchmarks: R@K, MdR, MnR);
    labels give label relevance (mAP@all, P@K). Give either or both. The float features are the
    embeddings the codes were made from; pass ``None`` for both to skip the float side.
    ``P@K`` keys are strings (``"10"``) so the dict survives a JSON round trip unchanged.
    """
    query_codes, gallery_codes = np.asarray(query_codes), np.asarray(gallery_codes)
    n_queries, n_gallery = query_codes.shape[0], gallery_codes.shape[0]
    if query_codes.ndim != 2 or gallery_codes.ndim != 2 or query_codes.shape[1] != gallery_codes.shape[1]:
        raise ValueError(f"codes must be [Q, nbytes] and [N, nbytes], got {query_codes.shape} and {gallery_codes.shape}")
    if n_queries == 0 or n_gallery == 0:
        raise ValueError("need at least one query and one gallery item")
    if targets is None and (query_labels is None or gallery_labels is None):
        raise ValueError("pass targets (paired gallery rows) or query_labels and gallery_labels")
    if (query_float is None) != (gallery_float is None):
        raise ValueError("pass both query_float and gallery_float, or neither")
    if query_float is not None and (len(query_float) != n_queries or len(gallery_float) != n_gallery):
        raise ValueError("float features must have as many rows as the codes (same queries, same gallery order)")
    if targets is not None:
        targets = _as_targets(targets, n_queries, n_gallery)
    has_labels = query_labels is not None and gallery_labels is not None
    if has_labels:
        query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if has_labels and (len(query_labels) != n_queries or len(gallery_labels) != n_gallery):
        raise ValueError("labels must have one row per query and one per gallery item")
    ks = sorted({int(k) for k in ks if 0 < int(k) <= n_gallery})
    gallery_unit = _normalize(gallery_float, "gallery_float") if gallery_float is not None else None

    def relevance_of(rows: slice) -> np.ndarray:
        if has_labels:
            return label_relevance(query_labels[rows], gallery_labels, label_rule)
        relevance = np.zeros((rows.stop - rows.start, n_gallery), dtype=bool)
        relevance[np.arange(relevance.shape[0]), targets[rows]] = True
        return relevance

    hash_side = _SideAccumulator(ks)
    float_side = _SideAccumulator(ks) if query_float is not None else None
    curve = _PrCurve(n_bits=query_codes.shape[1] * 8)
    expected_ranks: list[np.ndarray] = []
    expected_hits: dict[int, list[np.ndarray]] = {k: [] for k in RECALL_KS}
    for rows in _query_chunks(n_queries, n_gallery):
        relevance = relevance_of(rows)
        chunk_targets = targets[rows] if targets is not None else None
        distances = hamming_distances(query_codes[rows], gallery_codes)
        hash_side.add(_stable_order_by_distance(distances), chunk_targets, relevance if has_labels else None)
        curve.add(distances, relevance)
        if chunk_targets is not None:
            ranks, hits = _tie_expected(distances, chunk_targets)
            expected_ranks.append(ranks)
            for k in RECALL_KS:
                expected_hits[k].append(hits[k])
        if float_side is not None:
            similarity = _normalize(query_float[rows], "query_float") @ gallery_unit.T
            float_side.add(_stable_order_by_similarity(similarity), chunk_targets, relevance if has_labels else None)

    result: dict[str, Any] = {
        "n_queries": n_queries,
        "n_gallery": n_gallery,
        "n_bits": query_codes.shape[1] * 8,
        "tie_policy": "stable sort by (distance, gallery position)",
        "hash": hash_side.result(),
    }
    result["hash"]["pr_curve"] = curve.result()
    if targets is not None:
        tie_expected = {f"R@{k}": float(100.0 * np.concatenate(expected_hits[k]).mean()) for k in RECALL_KS}
        tie_expected["MnR"] = float(np.concatenate(expected_ranks).mean())
        result["hash"]["tie_expected"] = tie_expected
    if float_side is not None:
        result["float"] = float_side.result()
    return result


# --- internals --------------------------------------------------------------------------------


class _SideAccumulator:
    """Collects per-query metrics of one ranking (hash or float) over query chunks."""

    def __init__(self, ks: list[int]) -> None:
        self.ks = ks
        self.n_queries = 0
        self.ranks: list[np.ndarray] = []
        self.aps: list[np.ndarray] = []
        self.precisions: dict[int, list[np.ndarray]] = {k: [] for k in ks}

    def add(self, order: np.ndarray, targets: np.ndarray | None, relevance: np.ndarray | None) -> None:
        self.n_queries += order.shape[0]
        if targets is not None:
            self.ranks.append(ranks_of_targets(order, targets))
        if relevance is not None:
            answerable = relevance.any(axis=1)
            self.aps.append(average_precisions(order, relevance)[answerable])
            for k, values in _precision_at_k_per_query(order, relevance, self.ks).items():
                self.precisions[k].append(values[answerable])

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ranks:
            out.update(recall_summary(np.concatenate(self.ranks)))
        if self.aps:
            aps = np.concatenate(self.aps)
            out["mAP@all"] = float(aps.mean()) if aps.size else None
            out["n_queries_without_relevant"] = int(self.n_queries - aps.size)
            out["P@K"] = {
                str(k): (float(np.concatenate(values).mean()) if aps.size else None)
                for k, values in self.precisions.items()
            }
        return out


class _PrCurve:
    """Accumulates per-query precision/recall within each Hamming radius over query chunks."""

    def __init__(self, n_bits: int) -> None:
        self.n_radii = n_bits + 1
        self.precision_sum = np.zeros(self.n_radii)
        self.precision_count = np.zeros(self.n_radii, dtype=np.int64)
        self.recall_sum = np.zeros(self.n_radii)
        self.n_answerable = 0

    def add(self, distances: np.ndarray, relevance: np.ndarray) -> None:
        answerable = relevance.any(axis=1)
        distances, relevance = distances[answerable], relevance[answerable]
        n_rows = distances.shape[0]
        if n_rows == 0:
            return
        # Per query histograms of distances (all items and relevant items), then cumulative sums
        # give the counts within radius r.
        flat = (distances + self.n_radii * np.arange(n_rows)[:, None]).ravel()
        size = n_rows * self.n_radii
        retrieved = np.bincount(flat, minlength=size).reshape(n_rows, self.n_radii).cumsum(axis=1)
        relevant = (
            np.bincount(flat, weights=relevance.ravel(), minlength=size).reshape(n_rows, self.n_radii).cumsum(axis=1)
        )
        n_relevant = relevance.sum(axis=1)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(retrieved > 0, relevant / retrieved, 0.0)
        self.precision_sum += precision.sum(axis=0)
        self.precision_count += (retrieved > 0).sum(axis=0)
        self.recall_sum += (relevant / n_relevant).sum(axis=0)
        self.n_answerable += n_rows

    def result(self) -> dict[str, list]:
        precision = [
            float(total / count) if count else None
            for total, count in zip(self.precision_sum, self.precision_count, strict=True)
        ]
        recall = [float(total / self.n_answerable) if self.n_answerable else None for total in self.recall_sum]
        return {"radius": list(range(self.n_radii)), "precision": precision, "recall": recall}


def _tie_expected(distances: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Expected rank and P(rank <= K) of each target under uniformly random tie-breaking."""
    target_distance = distances[np.arange(len(targets)), targets][:, None]
    closer = (distances < target_distance).sum(axis=1)
    tied = (distances == target_distance).sum(axis=1)  # includes the target itself
    expected_rank = closer + (tied + 1) / 2.0
    hits = {k: np.clip((k - closer) / tied, 0.0, 1.0) for k in RECALL_KS}
    return expected_rank, hits


def _precision_at_k_per_query(order: np.ndarray, relevance: np.ndarray, ks: Iterable[int]) -> dict[int, np.ndarray]:
    ranked = _ranked_relevance(order, relevance)
    hits = np.cumsum(ranked, axis=1, dtype=np.int32)
    return {int(k): hits[:, int(k) - 1] / int(k) for k in ks if 0 < int(k) <= ranked.shape[1]}


def _ranked_relevance(order: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    order, relevance = np.asarray(order), np.asarray(relevance, dtype=bool)
    if order.ndim != 2 or relevance.ndim != 2 or order.shape[0] != relevance.shape[0]:
        raise ValueError(f"order [Q, N] and relevance [Q, N] must match, got {order.shape} and {relevance.shape}")
    return np.take_along_axis(relevance, order, axis=1)


def _stable_order_by_distance(distances: np.ndarray) -> np.ndarray:
    # Distances are <= 2048, so uint16 keys let numpy use its O(N) stable radix sort.
    return np.argsort(distances.astype(np.uint16), axis=1, kind="stable").astype(np.int64, copy=False)


def _stable_order_by_similarity(similarity: np.ndarray) -> np.ndarray:
    return np.argsort(-similarity, axis=1, kind="stable").astype(np.int64, copy=False)


def _normalize(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D float array [N, D], got shape {features.shape}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def _as_targets(targets: np.ndarray, n_queries: int, n_gallery: int | None) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.shape != (n_queries,) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer gallery rows, shape ({n_queries},), got {targets.dtype} {targets.shape}")
    if n_gallery is not None and n_queries and (targets.min() < 0 or targets.max() >= n_gallery):
        raise ValueError(f"targets must be gallery rows in [0, {n_gallery}), got values outside that range")
    return targets.astype(np.int64, copy=False)


def _query_chunks(n_queries: int, n_gallery: int) -> Iterable[slice]:
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_gallery))
    for start in range(0, n_queries, chunk):
        yield slice(start, min(start + chunk, n_queries))
