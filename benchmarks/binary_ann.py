"""Which faiss binary index answers a top-10 query over an archive-size index fast enough, and how exactly?

N codes (default 10,000,000 × 256 bits; LSH codes of clustered vectors, so near neighbours exist as in a real
archive), queries that are indexed codes with a few bits flipped (a clip of a known video, re-encoded). For each
index type: build seconds, bytes (serialised), median single-query latency at top-10, and recall@10 against exact
Hamming (a result counts when its distance is within the exact 10th distance: ties are legitimate answers).

    .venv/bin/python benchmarks/binary_ann.py --codes 10000000 --work-dir /tmp/reelhash-ann
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.search_service import clustered_codes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=10_000_000)
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--flip-bits", type=int, default=8, help="bits flipped in each query (default 8)")
    parser.add_argument("--kinds", default="flat,ivf,hnsw,multihash", help="index types to measure")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "binary_ann.json")
    return parser.parse_args(argv)


def make_queries(codes: np.ndarray, count: int, flips: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = np.unpackbits(codes[rng.integers(0, len(codes), count)], axis=1)
    for row in bits:
        row[rng.choice(bits.shape[1], flips, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def timed_queries(index, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray, np.ndarray]:
    seconds, all_d, all_i = [], [], []
    for query in queries:
        t = time.perf_counter()
        d, i = index.search(query[None, :], k)
        seconds.append(time.perf_counter() - t)
        all_d.append(d[0])
        all_i.append(i[0])
    return 1000 * statistics.median(seconds), np.array(all_d), np.array(all_i)


def recall_at_k(found_distances: np.ndarray, exact_distances: np.ndarray) -> float:
    """Share of returned top-k whose distance is within the exact k-th distance (ties count as right)."""
    kth = exact_distances[:, -1:]
    valid = found_distances >= 0
    return float(np.mean((found_distances <= kth) & valid))


def serialized_bytes(index) -> int:
    return int(faiss.serialize_index_binary(index).size)


def build(kind: str, codes: np.ndarray, bits: int, **params):
    started = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexBinaryFlat(bits)
        index.add(codes)
    elif kind == "ivf":
        quantizer = faiss.IndexBinaryFlat(bits)
        index = faiss.IndexBinaryIVF(quantizer, bits, params["nlist"])
        sample = codes[np.random.default_rng(0).choice(len(codes), min(len(codes), 40 * params["nlist"]), replace=False)]
        index.train(sample)
        index.add(codes)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(bits, params["M"])
        index.hnsw.efConstruction = params["efConstruction"]
        index.add(codes)
    elif kind == "multihash":
        index = faiss.IndexBinaryMultiHash(bits, params["nhash"], params["b"])
        index.add(codes)
    else:
        raise ValueError(kind)
    return index, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    codes = clustered_codes(args.codes, args.bits)
    queries = make_queries(codes, args.queries, args.flip_bits)
    results: dict = {"codes": args.codes, "bits": args.bits, "queries": args.queries, "flip_bits": args.flip_bits,
                     "threads": faiss.omp_get_max_threads(),
                     "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": []}
    flat, flat_seconds = build("flat", codes, args.bits)
    faiss.omp_set_num_threads(1)  # single-query latency: one request, one thread (the service serves many at once)
    flat_ms, exact_d, _ = timed_queries(flat, queries)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    results["rows"].append({"index": "IndexBinaryFlat (exact)", "build_s": round(flat_seconds, 1),
                            "bytes": serialized_bytes(flat), "query_ms": round(flat_ms, 2), "recall@10": 1.0})
    print(results["rows"][-1], flush=True)
    del flat
    settings = []
    kinds = set(args.kinds.split(","))
    if "ivf" in kinds:
        settings += [("ivf", {"nlist": 4096}, "nprobe", [8, 32, 128])]
    if "hnsw" in kinds:
        settings += [("hnsw", {"M": 16, "efConstruction": 40}, "efSearch", [16, 64, 256])]
    if "multihash" in kinds:
        settings += [("multihash", {"nhash": 16, "b": 16}, "nflip", [0, 1, 2])]
    for kind, params, knob, values in settings:
        index, seconds = build(kind, codes, args.bits, **params)
        size = serialized_bytes(index)
        faiss.omp_set_num_threads(1)
        for value in values:
            if knob == "nprobe":
                index.nprobe = value
            elif knob == "efSearch":
                index.hnsw.efSearch = value
            else:
                index.nflip = value
            ms, found_d, _ = timed_queries(index, queries)
            row = {"index": type(index).__name__, **params, knob: value, "build_s": round(seconds, 1), "bytes": size,
                   "query_ms": round(ms, 2), "recall@10": round(recall_at_k(found_d, exact_d), 3)}
            results["rows"].append(row)
            print(row, flush=True)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        del index
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
