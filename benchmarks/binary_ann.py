"""Which faiss binary index answers a top-10 query over an archive-size index fast enough, and how exactly?

N codes (default 10,000,000 × 256 bits; LSH codes of clustered vectors, so near neighbours exist as in a real
archive) and three query sets: "held-out" codes drawn from the same distribution but not indexed (a new clip
whose neighbours are its cluster), "far" codes drawn three times farther from their centres (a text query, whose
code lands farther from its videos' than another clip's would), and "near-duplicate" indexed codes with a few
bits flipped (a known clip re-encoded). For each index type and search setting: build seconds, bytes (serialised),
median single-query latency at top-10 on one thread, and recall@10 against exact Hamming (a result counts when its
distance is within the exact 10th distance: ties are legitimate answers).

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
    parser.add_argument("--kinds", default="flat,published,ivf,hnsw,multihash", help="index types to measure "
                        "('published': what publish_index builds by default, searched as the service does)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/reelhash-ann"),
                        help="scratch store of the 'published' row")
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


def serialized_bytes(index) -> int | None:
    try:
        return int(faiss.serialize_index_binary(index).size)
    except RuntimeError:  # an index type faiss cannot write
        return None


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
    query_sets = {"heldout": clustered_codes(args.queries, args.bits, point_seed=99),
                  "far": clustered_codes(args.queries, args.bits, point_seed=98, spread=1.0),
                  "near": make_queries(codes, args.queries, args.flip_bits)}
    results: dict = {"codes": args.codes, "bits": args.bits, "queries": args.queries, "flip_bits": args.flip_bits,
                     "threads": faiss.omp_get_max_threads(),
                     "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": []}
    flat, flat_seconds = build("flat", codes, args.bits)
    faiss.omp_set_num_threads(1)  # single-query latency: one request, one thread (the service serves many at once)
    row = {"index": "IndexBinaryFlat (exact)", "build_s": round(flat_seconds, 1), "bytes": serialized_bytes(flat)}
    exact = {}
    for name, queries in query_sets.items():
        ms, exact[name], _ = timed_queries(flat, queries)
        row |= {f"{name}_ms": round(ms, 2), f"{name}_recall@10": 1.0}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    results["rows"].append(row)
    print(results["rows"][-1], flush=True)
    del flat
    kinds = set(args.kinds.split(","))
    if "published" in kinds:
        results["rows"] += published_rows(codes, args, query_sets, exact)
        write_results(args.out, results)
    settings = []
    if "ivf" in kinds:
        settings += [("ivf", {"nlist": 4096}, "nprobe", [16, 32, 64, 128, 256, 512])]
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
            row = {"index": type(index).__name__, **params, knob: value, "build_s": round(seconds, 1), "bytes": size}
            for name, queries in query_sets.items():
                ms, found_d, _ = timed_queries(index, queries)
                row |= {f"{name}_ms": round(ms, 2), f"{name}_recall@10": round(recall_at_k(found_d, exact[name]), 3)}
            results["rows"].append(row)
            print(row, flush=True)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        del index
        write_results(args.out, results)  # after each index type: a long run keeps what it measured
    write_results(args.out, results)
    return 0


def published_rows(codes: np.ndarray, args: argparse.Namespace, query_sets: dict, exact: dict) -> list[dict]:
    """The index publish_index builds by default (1M-code shards, the kind BinaryIndexConfig picks for this
    size), opened and searched as the service does: all shards at once, top-10 clips merged across shards."""
    import shutil

    import pyarrow as pa

    from hashing.bits import codes_to_arrow
    from hashing.index import BinaryIndexConfig
    from pipeline.codes import code_schema
    from pipeline.publish import CollectionCodes, publish_index
    from pipeline.search import PublishedIndex
    from pipeline.store import StoreLayout

    shutil.rmtree(args.work_dir, ignore_errors=True)
    layout = StoreLayout(args.work_dir / "store")
    rows = np.arange(len(codes))
    table = pa.table({"video_id": pa.array(rows.astype(str)), "clip_idx": pa.array(np.zeros(len(codes), np.int32)),
                      "t_start": pa.array(np.zeros(len(codes))), "t_end": pa.array(np.ones(len(codes))),
                      "code": codes_to_arrow(codes)}, schema=code_schema(args.bits))
    config = BinaryIndexConfig()
    started = time.perf_counter()
    publish_index(layout, "ann", model_id="m", code_bits=args.bits, metrics={}, model_info={},
                  collections=[CollectionCodes("archive", "run-1", table)], index_config=config)
    seconds = time.perf_counter() - started
    del table
    index = PublishedIndex.open(layout, "ann")
    size = sum(path.stat().st_size for path in layout.index_version_dir("ann", 1).iterdir())
    kind = index.manifest["search_index"]["kind"]
    faiss.omp_set_num_threads(1)
    out = []
    for nprobe in ([None] if kind == "flat" else sorted({16, 32, 64, config.ivf_nprobe, 256})):
        for shard in index.shards:
            if nprobe is not None:
                shard.nprobe = nprobe
        row = {"index": f"published: {len(index.shards)} × {kind} shards, searched in parallel",
               **({"nprobe": nprobe, "default": nprobe == config.ivf_nprobe} if nprobe else {}),
               "build_s": round(seconds, 1), "bytes": size}
        for name, queries in query_sets.items():
            timings, found = [], []
            for query in queries:
                t = time.perf_counter()
                distances, _, _ = index.search_clips(query[None, :], 10)
                timings.append(time.perf_counter() - t)
                found.append(distances[0])
            row |= {f"{name}_ms": round(1000 * statistics.median(timings), 2),
                    f"{name}_recall@10": round(recall_at_k(np.array(found), exact[name]), 3)}
        out.append(row)
        print(row, flush=True)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    shutil.rmtree(args.work_dir, ignore_errors=True)
    return out


def write_results(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
