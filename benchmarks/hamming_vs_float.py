"""Hamming search on packed codes vs exact float search, side by side in one run.

Builds N clustered float32 unit vectors (a stand-in for CLIP embeddings), hashes them with LSH or
ITQ, and compares faiss ``IndexBinaryFlat`` (Hamming) with faiss ``IndexFlatIP`` (cosine on unit
vectors): build time, bytes per item, queries/s batched and one query at a time, and recall@k of
the Hamming top-k against the float top-k. Prints a markdown table and writes JSON.

    .venv/bin/python benchmarks/hamming_vs_float.py --n 1000000 --bits 256
    .venv/bin/python benchmarks/hamming_vs_float.py --n 20000        # quick check, a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from hashing.hashers import make_hasher
from hashing.index import BinaryIndexShard

_CHUNK_ROWS = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    parser.add_argument("--bits", type=int, default=256, help="code length")
    parser.add_argument("--dim", type=int, default=512, help="float embedding dimension")
    parser.add_argument("--queries", type=int, default=200, help="queries for the batched search")
    parser.add_argument("--single-queries", type=int, default=50, help="queries searched one at a time")
    parser.add_argument("--k", type=int, default=10, help="top-k compared")
    parser.add_argument("--candidates", type=int, default=100, help="also report recall of the float top-k within the Hamming top-CANDIDATES")
    parser.add_argument("--method", choices=["lsh", "itq"], default="lsh", help="hash method")
    parser.add_argument("--fit-sample", type=int, default=50_000, help="rows the hasher is fitted on")
    parser.add_argument("--clusters", type=int, default=2000, help="cluster centres of the synthetic data")
    parser.add_argument("--spread", type=float, default=0.8, help="within-cluster spread (in a low-dimensional subspace) relative to the centre norm")
    parser.add_argument("--latent-dim", type=int, default=32, help="dimension of the subspace the within-cluster spread lives in")
    parser.add_argument("--noise", type=float, default=0.1, help="isotropic noise, relative to the centre norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads (default: faiss's own)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hamming_vs_float.json"))
    return parser.parse_args(argv)


class ClusteredUnitVectors:
    """Deterministic clustered unit vectors, produced chunk by chunk to bound memory.

    x = normalise(centre + spread * (z @ basis) + noise * e): unit centres, a within-cluster
    spread that lives in a shared ``latent_dim``-dimensional subspace, and small isotropic noise.
    Embeddings like CLIP's have a low intrinsic dimension; purely isotropic noise in 512
    dimensions would make every cluster member almost equally near (concentration of measure),
    so "the 10 nearest neighbours" would be nearly arbitrary for any method.
    """

    def __init__(self, dim: int, n_clusters: int, latent_dim: int, spread: float, noise: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        basis, _ = np.linalg.qr(rng.standard_normal((dim, latent_dim)))
        self.basis = basis.T.astype(np.float32)  # [latent_dim, dim], orthonormal rows
        self.dim, self.latent_dim, self.spread, self.noise, self.seed = dim, latent_dim, spread, noise, seed

    def chunk(self, n_rows: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        centre_ids = rng.integers(0, len(self.centres), size=n_rows)
        latent = rng.standard_normal((n_rows, self.latent_dim), dtype=np.float32)
        vectors = self.centres[centre_ids] + (self.spread / np.sqrt(self.latent_dim)) * (latent @ self.basis)
        vectors += rng.standard_normal((n_rows, self.dim), dtype=np.float32) * (self.noise / np.sqrt(self.dim))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    load_before = os.getloadavg()
    data = ClusteredUnitVectors(args.dim, args.clusters, args.latent_dim, args.spread, args.noise, args.seed)
    queries = data.chunk(args.queries, stream=0)  # its own stream: queries are not gallery items

    float_index = faiss.IndexFlatIP(args.dim)
    hasher = make_hasher(args.method, args.bits, seed=args.seed)
    codes = np.empty((args.n, args.bits // 8), dtype=np.uint8)
    float_add_s = encode_s = fit_s = 0.0
    for chunk_no, start in enumerate(range(0, args.n, _CHUNK_ROWS)):
        vectors = data.chunk(min(_CHUNK_ROWS, args.n - start), stream=1 + chunk_no)
        if chunk_no == 0:
            t0 = time.perf_counter()
            hasher.fit(vectors[: args.fit_sample])
            fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        float_index.add(vectors)
        float_add_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        codes[start : start + len(vectors)] = hasher.encode(vectors)
        encode_s += time.perf_counter() - t0
        del vectors
    t0 = time.perf_counter()
    shard = BinaryIndexShard.build(codes)
    binary_add_s = time.perf_counter() - t0

    # Warm both indexes (page faults, thread pools) before timing.
    float_index.search(queries[:2], args.k)
    shard.search(hasher.encode(queries[:2]), args.k)

    t0 = time.perf_counter()
    _, float_rows = float_index.search(queries, args.k)
    float_batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    query_codes = hasher.encode(queries)
    hash_query_encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, hash_rows = shard.search(query_codes, args.k)
    hash_batch_s = time.perf_counter() - t0
    _, candidate_rows = shard.search(query_codes, args.candidates)

    n_single = min(args.single_queries, args.queries)
    t0 = time.perf_counter()
    for i in range(n_single):
        float_index.search(queries[i : i + 1], args.k)
    float_single_s = (time.perf_counter() - t0) / n_single
    t0 = time.perf_counter()
    for i in range(n_single):
        shard.search(hasher.encode(queries[i : i + 1]), args.k)
    hash_single_s = (time.perf_counter() - t0) / n_single

    recall = np.mean([len(set(h) & set(f)) / args.k for h, f in zip(hash_rows, float_rows, strict=True)])
    candidate_recall = np.mean(
        [len(set(c) & set(f)) / args.k for c, f in zip(candidate_rows, float_rows, strict=True)]
    )
    float_bytes = args.dim * 4
    hash_bytes = args.bits // 8
    hash_batch_total_s = hash_batch_s + hash_query_encode_s
    return {
        "config": {
            "n": args.n,
            "bits": args.bits,
            "dim": args.dim,
            "queries": args.queries,
            "single_queries": n_single,
            "k": args.k,
            "candidates": args.candidates,
            "method": args.method,
            "fit_sample": min(args.fit_sample, args.n, _CHUNK_ROWS),
            "clusters": args.clusters,
            "latent_dim": args.latent_dim,
            "spread": args.spread,
            "noise": args.noise,
            "seed": args.seed,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            # Other processes share the CPU; a load above the core count makes timings noisy.
            "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "float": {
            "index": "IndexFlatIP",
            "bytes_per_item": float_bytes,
            "index_mb": args.n * float_bytes / 2**20,
            "build_s": float_add_s,
            "batch_qps": args.queries / float_batch_s,
            "single_qps": 1.0 / float_single_s,
            "single_ms": 1000.0 * float_single_s,
        },
        "hash": {
            "index": "IndexBinaryFlat",
            "bytes_per_item": hash_bytes,
            "index_mb": args.n * hash_bytes / 2**20,
            "build_s": fit_s + encode_s + binary_add_s,
            "fit_s": fit_s,
            "encode_s": encode_s,
            "index_add_s": binary_add_s,
            "batch_qps": args.queries / hash_batch_total_s,
            "batch_qps_search_only": args.queries / hash_batch_s,
            "single_qps": 1.0 / hash_single_s,
            "single_ms": 1000.0 * hash_single_s,
            f"recall@{args.k}": float(recall),
            f"recall@{args.k}_in_top{args.candidates}": float(candidate_recall),
        },
        "ratios": {
            "bytes_float_over_hash": float_bytes / hash_bytes,
            "batch_qps_hash_over_float": (args.queries / hash_batch_total_s) / (args.queries / float_batch_s),
            "single_qps_hash_over_float": float_single_s / hash_single_s,
        },
    }


def markdown_table(result: dict[str, Any]) -> str:
    config, flt, hsh, ratio = result["config"], result["float"], result["hash"], result["ratios"]
    k, cand = config["k"], config["candidates"]
    rows = [
        ("bytes per item", f"{flt['bytes_per_item']}", f"{hsh['bytes_per_item']}", f"{ratio['bytes_float_over_hash']:.0f}x smaller"),
        ("index size (MiB)", f"{flt['index_mb']:.1f}", f"{hsh['index_mb']:.1f}", ""),
        (
            "build time (s)",
            f"{flt['build_s']:.2f} (add)",
            f"{hsh['build_s']:.2f} (fit {hsh['fit_s']:.2f} + encode {hsh['encode_s']:.2f} + add {hsh['index_add_s']:.2f})",
            "",
        ),
        (
            f"queries/s, batch of {config['queries']}",
            f"{flt['batch_qps']:.0f}",
            f"{hsh['batch_qps']:.0f} (search only {hsh['batch_qps_search_only']:.0f})",
            f"{ratio['batch_qps_hash_over_float']:.1f}x",
        ),
        (
            "queries/s, one at a time",
            f"{flt['single_qps']:.1f} ({flt['single_ms']:.2f} ms)",
            f"{hsh['single_qps']:.1f} ({hsh['single_ms']:.2f} ms)",
            f"{ratio['single_qps_hash_over_float']:.1f}x",
        ),
        (f"recall@{k} vs float top-{k}", "1.000 (reference)", f"{hsh[f'recall@{k}']:.3f}", ""),
        (f"float top-{k} found in top-{cand}", "", f"{hsh[f'recall@{k}_in_top{cand}']:.3f}", ""),
    ]
    title = (
        f"N={config['n']:,}, dim={config['dim']}, {config['bits']}-bit {config['method'].upper()}, "
        f"k={k}, {result['machine']['faiss_threads']} faiss threads, "
        f"load average {result['machine']['loadavg_1min_before_after'][0]} on {result['machine']['cpu_count']} cores"
    )
    lines = [
        f"**{title}**",
        "",
        "| | float (IndexFlatIP) | hash (IndexBinaryFlat) | hash vs float |",
        "|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    result = run(args)
    result["total_s"] = time.perf_counter() - started
    print(markdown_table(result))
    print(f"\ntotal {result['total_s']:.1f} s; JSON: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
