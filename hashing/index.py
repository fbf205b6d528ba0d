"""Hamming top-k: one faiss binary index per shard, plus a cross-shard merge.

A shard is an exact ``IndexBinaryFlat`` or, for archive-size versions, an ``IndexBinaryIVF``
(k-means lists over the codes; ``nprobe`` lists are scanned per query, stored in the file). Which
one a version uses is ``BinaryIndexConfig.kind_for(total_rows)``; the measurements behind the
defaults are in docs/serving.md ("Archive-size indexes").

Result order is deterministic everywhere: within a flat shard by (distance, row) — faiss 1.15's
heaps break distance ties by the smaller id, which the tests check against ``hamming_topk`` —
and across shards by (distance, shard_no, row).
"""

from __future__ import annotations

import os
from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hashing.bits import check_bits, hamming_distances
from hashing.files import StorePath, as_path, atomic_output_path, is_local

# Queries per chunk in hamming_topk; each chunk holds a [chunk, N] int64 sort key.
_TOPK_QUERY_CHUNK = 64
# What faiss reports as the distance of a result an approximate index did not find (row -1).
MISSING_DISTANCE = np.iinfo(np.int32).max


class IndexLoadError(RuntimeError):
    """An index shard file is missing, unreadable, or not a binary index this project writes."""


class BinaryIndexConfig(BaseModel):
    """Which faiss binary index the shards of a published version use.

    ``auto`` keeps exact search (flat) up to ``exact_max_rows`` codes in the whole version and switches to
    inverted lists above: a flat scan costs ~1 ms per million 256-bit codes and query (10.9 ms at 10M), the default
    IVF version 3.4 ms at 10M with recall@10 >= 0.97 (docs/serving.md, "Archive-size indexes").
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["auto", "flat", "ivf"] = "auto"
    exact_max_rows: int = Field(2_000_000, ge=0, description="flat up to this many codes per version (auto)")
    ivf_rows_per_list: int = Field(1000, ge=32, description="codes per inverted list (nlist = rows / this)")
    ivf_nprobe: int = Field(128, ge=1, description="lists scanned per query")
    ivf_train_rows_per_list: int = Field(40, ge=10, description="training sample per list (faiss k-means)")
    seed: int = 0

    def kind_for(self, total_rows: int) -> Literal["flat", "ivf"]:
        if self.kind != "auto":
            return self.kind
        return "flat" if total_rows <= self.exact_max_rows else "ivf"

    def nlist_for(self, rows: int) -> int:
        """A power of two near rows / ivf_rows_per_list (at least 1)."""
        target = max(1, rows // self.ivf_rows_per_list)
        return 1 << max(0, round(np.log2(target)))


class BinaryIndexShard:
    """Packed codes of one shard in a faiss binary index; rows are 0..len-1 in add order.

    ``exact`` says whether the shard answers the true Hamming top-k (flat) or an approximation (IVF).
    """

    def __init__(self, index: faiss.IndexBinary) -> None:
        self._index = index

    @classmethod
    def build(cls, packed: np.ndarray, kind: Literal["flat", "ivf"] = "flat",
              config: BinaryIndexConfig | None = None) -> BinaryIndexShard:
        packed = _as_codes(packed, "packed")
        n_bits = packed.shape[1] * 8
        check_bits(n_bits)
        config = config or BinaryIndexConfig()
        nlist = config.nlist_for(len(packed))
        if kind == "flat" or nlist < 2:  # too few codes for lists: a flat scan is as fast
            index = faiss.IndexBinaryFlat(n_bits)
        elif kind == "ivf":
            index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(n_bits), n_bits, nlist)
            sample_rows = min(len(packed), config.ivf_train_rows_per_list * nlist)
            sample = np.random.default_rng(config.seed).choice(len(packed), sample_rows, replace=False)
            index.cp.seed = config.seed  # the same codes give the same lists: a rebuild answers identically
            index.train(packed[np.sort(sample)])
            index.nprobe = min(config.ivf_nprobe, nlist)
        else:
            raise ValueError(f"unknown binary index kind {kind!r}: use 'flat' or 'ivf'")
        if packed.shape[0]:
            index.add(packed)
        return cls(index)

    @property
    def exact(self) -> bool:
        return isinstance(self._index, faiss.IndexBinaryFlat)

    @property
    def kind(self) -> str:
        return "flat" if self.exact else "ivf"

    @property
    def n_bits(self) -> int:
        return int(self._index.d)

    @property
    def nprobe(self) -> int | None:
        """Lists an IVF shard scans per query (None for a flat shard)."""
        return int(self._index.nprobe) if not self.exact else None

    @nprobe.setter
    def nprobe(self, lists: int) -> None:
        if self.exact:
            raise ValueError("a flat shard scans every code; nprobe applies to IVF shards only")
        self._index.nprobe = int(lists)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, q_packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by Hamming distance: ``(dist int32 [Q, k'], rows int64 [Q, k'])``, k' = min(k, len).

        An IVF shard may find fewer than k' codes in the lists it scans: those places hold row -1 and
        distance ``MISSING_DISTANCE``, after every real result.
        """
        q_packed = _as_codes(q_packed, "q_packed")
        if q_packed.shape[1] * 8 != self.n_bits:
            raise ValueError(
                f"query codes have {q_packed.shape[1] * 8} bits but this shard holds "
                f"{self.n_bits}-bit codes: hash queries with the model that built the index"
            )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k_found = min(int(k), len(self))
        if k_found == 0 or q_packed.shape[0] == 0:
            return (
                np.empty((q_packed.shape[0], k_found), dtype=np.int32),
                np.empty((q_packed.shape[0], k_found), dtype=np.int64),
            )
        # Asking faiss for at most `len` results means a flat shard never pads with -1 rows.
        distances, rows = self._index.search(q_packed, k_found)
        return distances.astype(np.int32, copy=False), rows.astype(np.int64, copy=False)

    def save(self, path: str | os.PathLike[str] | StorePath) -> StorePath:
        """Write the shard with ``faiss.write_index_binary`` through the atomic-write helper."""
        with atomic_output_path(path) as temporary:
            faiss.write_index_binary(self._index, str(temporary))
        return as_path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> BinaryIndexShard:
        """Read a shard; ``mmap=True`` maps the codes from a local file instead of reading them."""
        path = as_path(path)
        if not path.is_file():
            raise IndexLoadError(f"index shard {path} does not exist: publish the index (again) or fix the path")
        try:
            if is_local(path):
                index = faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
            else:  # an object cannot be memory-mapped: read it whole
                index = faiss.deserialize_index_binary(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
            raise IndexLoadError(
                f"index shard {path} is corrupt or not a faiss binary index ({first_line}); "
                "rebuild it by publishing the index again"
            ) from error
        if not isinstance(index, (faiss.IndexBinaryFlat, faiss.IndexBinaryIVF)):
            raise IndexLoadError(
                f"index shard {path} holds a {type(index).__name__}, expected IndexBinaryFlat or IndexBinaryIVF"
            )
        return cls(index)


def merge_topk(
    results: list[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-shard ``(dist, rows)`` into a global top-k ``(dist, shard_no, rows)``.

    ``results[i]`` belongs to shard ``i``. Order is by (distance, shard_no, row); the width is
    min(k, total results per query).
    """
    if not results:
        raise ValueError("merge_topk needs the results of at least one shard")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n_queries = {np.shape(dist)[0] for dist, _ in results}
    if len(n_queries) != 1:
        raise ValueError(f"shard results disagree on the number of queries: {sorted(n_queries)}")
    distances = np.concatenate([np.asarray(dist, dtype=np.int32) for dist, _ in results], axis=1)
    rows = np.concatenate([np.asarray(found, dtype=np.int64) for _, found in results], axis=1)
    shard_numbers = np.concatenate(
        [np.full(np.shape(found), shard_no, dtype=np.int32) for shard_no, (_, found) in enumerate(results)],
        axis=1,
    )
    if distances.shape != rows.shape:
        raise ValueError("each shard result must have dist and rows of the same shape")
    # lexsort: the last key is the primary one.
    order = np.lexsort((rows, shard_numbers, distances), axis=-1)[:, :k]
    return (
        np.take_along_axis(distances, order, axis=1),
        np.take_along_axis(shard_numbers, order, axis=1),
        np.take_along_axis(rows, order, axis=1),
    )


def hamming_topk(q_packed: np.ndarray, g_packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Numpy reference top-k: ``(dist int32 [Q, k'], rows int64 [Q, k'])``, ties by row index."""
    q_packed = _as_codes(q_packed, "q_packed")
    g_packed = _as_codes(g_packed, "g_packed")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n_gallery = g_packed.shape[0]
    k_found = min(int(k), n_gallery)
    out_dist = np.empty((q_packed.shape[0], k_found), dtype=np.int32)
    out_rows = np.empty((q_packed.shape[0], k_found), dtype=np.int64)
    if k_found == 0:
        return out_dist, out_rows
    row_ids = np.arange(n_gallery, dtype=np.int64)
    for start in range(0, q_packed.shape[0], _TOPK_QUERY_CHUNK):
        distances = hamming_distances(q_packed[start : start + _TOPK_QUERY_CHUNK], g_packed)
        # A unique key per (distance, row) makes the partial selection tie-stable.
        key = distances.astype(np.int64) * n_gallery + row_ids
        if k_found < n_gallery:
            candidates = np.argpartition(key, k_found - 1, axis=1)[:, :k_found]
        else:
            candidates = np.broadcast_to(row_ids, key.shape)
        best = np.take_along_axis(
            candidates, np.argsort(np.take_along_axis(key, candidates, axis=1), axis=1), axis=1
        )
        out_rows[start : start + len(best)] = best
        out_dist[start : start + len(best)] = np.take_along_axis(distances, best, axis=1)
    return out_dist, out_rows


def _as_codes(packed: np.ndarray, name: str) -> np.ndarray:
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"{name} must be packed codes, uint8 [N, n_bits/8]; got {packed.dtype} {packed.shape}")
    return np.ascontiguousarray(packed)
