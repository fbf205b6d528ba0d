"""Packed binary codes: packing, Hamming distances and the Arrow column type.

A code of ``n_bits`` bits is stored as ``n_bits / 8`` bytes, most significant bit first
(exactly ``np.packbits(bits, axis=1)``). In Parquet/Arrow a code column is
``fixed_size_binary[n_bits / 8]``, never ``list<uint8>``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MIN_BITS = 16
MAX_BITS = 2048

# Upper bound on the XOR temporary [chunk, N, words] built by hamming_distances (bytes).
_XOR_CHUNK_BYTES = 64 * 1024 * 1024


def check_bits(n_bits: int) -> None:
    """Raise ``ValueError`` unless ``n_bits`` is a supported code length."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)):
        raise ValueError(f"n_bits must be an integer, got {n_bits!r}")
    if not (MIN_BITS <= n_bits <= MAX_BITS) or n_bits % 8 != 0:
        raise ValueError(
            f"n_bits={n_bits} is not supported: use a multiple of 8 between {MIN_BITS} and "
            f"{MAX_BITS} (e.g. 64, 128, 256, 512, 1024, 2048)"
        )


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack bool or 0/1 bits ``[N, B]`` into ``uint8 [N, B/8]``, most significant bit first."""
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"bits must be a 2-D array [N, n_bits], got shape {bits.shape}")
    check_bits(bits.shape[1])
    if bits.dtype != np.bool_:
        if not np.isin(bits, (0, 1)).all():
            raise ValueError("bits must be boolean or contain only 0 and 1")
        bits = bits.astype(np.bool_)
    return np.packbits(bits, axis=1)


def unpack_bits(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``uint8 [N, n_bits/8]`` -> ``bool [N, n_bits]``."""
    check_bits(n_bits)
    packed = _as_packed(packed, "packed")
    if packed.shape[1] * 8 != n_bits:
        raise ValueError(f"packed codes have {packed.shape[1]} bytes but n_bits={n_bits}")
    return np.unpackbits(packed, axis=1, count=n_bits).astype(np.bool_)


def hamming_distances(q_packed: np.ndarray, g_packed: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances, ``int32 [Q, N]``.

    A numpy reference (XOR + ``np.bitwise_count``); faiss is much faster for search. Works on
    ``uint64`` words when the code length allows, and chunks over queries so the XOR temporary
    stays under a fixed memory budget.
    """
    q_packed = _as_packed(q_packed, "q_packed")
    g_packed = _as_packed(g_packed, "g_packed")
    if q_packed.shape[1] != g_packed.shape[1]:
        raise ValueError(
            f"query codes have {q_packed.shape[1]} bytes but gallery codes have "
            f"{g_packed.shape[1]}: both sides must use the same code length"
        )
    nbytes = q_packed.shape[1]
    word = np.uint64 if nbytes % 8 == 0 else np.uint8
    q_words = np.ascontiguousarray(q_packed).view(word)
    g_words = np.ascontiguousarray(g_packed).view(word)
    n_query, n_gallery = q_words.shape[0], g_words.shape[0]
    out = np.empty((n_query, n_gallery), dtype=np.int32)
    row_bytes = max(1, n_gallery * nbytes)
    chunk = max(1, _XOR_CHUNK_BYTES // row_bytes)
    for start in range(0, n_query, chunk):
        stop = min(start + chunk, n_query)
        xor = np.bitwise_xor(q_words[start:stop, None, :], g_words[None, :, :])
        np.sum(np.bitwise_count(xor), axis=2, dtype=np.int32, out=out[start:stop])
    return out


def codes_to_arrow(packed: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Wrap packed codes as an Arrow ``fixed_size_binary[nbytes]`` array without copying."""
    packed = np.ascontiguousarray(_as_packed(packed, "packed"))
    n_rows, nbytes = packed.shape
    check_bits(nbytes * 8)
    # py_buffer keeps a reference to the numpy array, so the memory outlives this call.
    data = pa.py_buffer(packed)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(nbytes), n_rows, [None, data])


def codes_from_arrow(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Read a ``fixed_size_binary`` Arrow column back into ``uint8 [N, nbytes]``.

    A single contiguous array is returned as a read-only zero-copy view; a chunked array is
    concatenated into a new array.
    """
    if isinstance(arr, pa.ChunkedArray):
        nbytes = _fixed_width(arr.type)
        if arr.num_chunks == 1:
            return codes_from_arrow(arr.chunk(0))
        parts = [codes_from_arrow(chunk) for chunk in arr.chunks]
        if not parts:
            return np.empty((0, nbytes), dtype=np.uint8)
        return np.concatenate(parts, axis=0)
    if not isinstance(arr, pa.Array):
        raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(arr).__name__}")
    nbytes = _fixed_width(arr.type)
    if arr.null_count:
        raise ValueError(
            f"code column has {arr.null_count} null values; every row needs a code "
            "(drop or re-hash the rows without one)"
        )
    if len(arr) == 0:
        return np.empty((0, nbytes), dtype=np.uint8)
    data = arr.buffers()[1]
    flat = np.frombuffer(data, dtype=np.uint8, count=len(arr) * nbytes, offset=arr.offset * nbytes)
    return flat.reshape(len(arr), nbytes)


def _fixed_width(arrow_type: pa.DataType) -> int:
    if not pa.types.is_fixed_size_binary(arrow_type):
        raise TypeError(
            f"code column must be fixed_size_binary[n_bits/8], got {arrow_type}; "
            "write codes with hashing.bits.codes_to_arrow"
        )
    return arrow_type.byte_width


def _as_packed(packed: np.ndarray, name: str) -> np.ndarray:
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(
            f"{name} must be packed codes, uint8 [N, n_bits/8]; got {packed.dtype} {packed.shape} "
            "(use hashing.bits.pack_bits)"
        )
    return packed
