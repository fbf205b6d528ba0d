"""The search service against faiss called directly on the same codes — side by side in one run — and under load.

One published index of N codes (default 1,000,000 × 256 bits, fabricated: LSH codes of clustered vectors, so
neighbours exist as they do in a real archive) served by `reelhash serve`'s app on a real uvicorn server:

(a) faiss alone: `IndexBinaryFlat.search` of one query code, top-40 (what the service asks for a top-10 of videos);
(b) the service: `reelhash serve` in its own process, `GET /api/search?q=…&k=10` over HTTP, its `Server-Timing`
    split into the text encoder's time and the search (faiss + grouping per video + the rows of the answer);
(c) load: C concurrent clients for S seconds while the index is re-published and rolled back every few seconds:
    errors, versions seen, p50/p99 latency.

Reported: medians, (b) search / (a) — the issue's bound is 1.2 — and the encoder's time separately.

    .venv/bin/python benchmarks/search_service.py --codes 1000000 --work-dir /tmp/reelhash-serve-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the test helper that finds a free port

import httpx
import numpy as np
import pyarrow as pa

from flows.cli import prepare_environment

prepare_environment()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=1_000_000, help="clips in the index (default 1,000,000)")
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--clip-arch", default="ViT-B-32", help="text encoder architecture (random weights)")
    parser.add_argument("--queries", type=int, default=50, help="single queries timed per side (default 50)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the load test (default 8)")
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/reelhash-serve-bench"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "search_service.json")
    return parser.parse_args(argv)


def clustered_codes(n: int, bits: int, seed: int = 0, clusters: int = 20_000, dim: int = 64, spread: float = 0.35,
                    point_seed: int | None = None) -> np.ndarray:
    """LSH codes (sign of random projections) of points around ``clusters`` centres, packed, made in chunks.

    The centres and projections come from ``seed``; the points from ``point_seed`` (default: the same stream), so
    another ``point_seed`` draws new points of the same archive, and a larger ``spread`` draws points farther
    from their centre (a query of another modality lands farther from its matches than a re-encoded clip).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    planes = rng.standard_normal((dim, bits)).astype(np.float32)
    if point_seed is not None:
        rng = np.random.default_rng(point_seed)
    out = np.empty((n, bits // 8), np.uint8)
    for start in range(0, n, 200_000):
        count = min(200_000, n - start)
        points = centres[rng.integers(0, clusters, count)] + spread * rng.standard_normal((count, dim), np.float32)
        out[start:start + count] = np.packbits(points @ planes > 0, axis=1)
    return out


def build_store(args: argparse.Namespace):
    from hashing.bits import codes_to_arrow
    from hashing.encoders import build_media_encoder
    from hashing.encoders.weights import OpenClipEncoderConfig
    from hashing.hashers import make_hasher
    from pipeline.codes import code_schema
    from pipeline.models import load_model, model_summary, save_model
    from pipeline.publish import CollectionCodes, publish_index
    from pipeline.sampling import SamplingConfig
    from pipeline.store import StoreLayout

    shutil.rmtree(args.work_dir, ignore_errors=True)
    layout = StoreLayout(args.work_dir / "store")
    config = OpenClipEncoderConfig(arch=args.clip_arch, allow_random_weights=True, device="cpu")
    encoder = build_media_encoder(config)
    hasher = make_hasher("lsh", args.bits, seed=1).fit(np.random.default_rng(1).standard_normal((64, encoder.embed_dim)))
    model_id = save_model(layout, "bench", hasher=hasher, encoder_config=encoder.config, encoder_info=encoder.describe(),
                          sampling=SamplingConfig(), training={})
    model = load_model(layout, model_id)
    codes = clustered_codes(args.codes, args.bits)
    videos = np.arange(args.codes) // 4  # four clips per video
    table = pa.table({
        "video_id": pa.array([f"v{v:08d}" for v in videos]),
        "clip_idx": pa.array(np.arange(args.codes) % 4, pa.int32()),
        "t_start": pa.array((np.arange(args.codes) % 4) * 4.0), "t_end": pa.array((np.arange(args.codes) % 4) * 4.0 + 4),
        "code": codes_to_arrow(codes),
    }, schema=code_schema(args.bits))
    table = (table.append_column("uri", pa.array([f"archive/v{v:08d}.mp4" for v in videos]))
             .append_column("caption", pa.nulls(args.codes, pa.string()))
             .append_column("labels", pa.nulls(args.codes, pa.list_(pa.string()))))
    for version in (1, 2):  # two versions to switch between in the load test
        publish_index(layout, "bench", model_id=model_id, code_bits=args.bits, model_info=model_summary(model),
                      collections=[CollectionCodes("archive", f"run-{version}", table)], metrics={})
    return layout, codes


def median_ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 2)


def percentile_ms(samples: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(samples, q)), 2)


def start_server(store: Path, port: int, log: Path) -> subprocess.Popen:
    """`reelhash serve` in its own process, as deployed (its own interpreter and GIL; access log on)."""
    env = {key: value for key, value in os.environ.items() if key != "REELHASH_API_TOKEN"}
    command = [sys.executable, "-m", "flows.cli", "serve", "--store", str(store), "--index", "bench",
               "--port", str(port), "--poll-seconds", "0.2"]
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"reelhash serve exited with {server.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit(f"reelhash serve did not answer /healthz within 600 s; see {log}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from served_index import free_port

    from pipeline.publish import set_current
    from pipeline.search import PublishedIndex, QueryHasher
    from pipeline.models import load_model

    started = time.perf_counter()
    layout, codes = build_store(args)
    build_seconds = time.perf_counter() - started
    index = PublishedIndex.open(layout, "bench")
    shard = index.shards[0]
    rng = np.random.default_rng(7)
    queries = codes[rng.integers(0, len(codes), args.queries)]
    direct, in_process = [], []
    for query in queries:
        t = time.perf_counter()
        shard.search(query[None, :], 40)  # what the service asks faiss for a top-10 of videos
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(query[None, :], 10)  # plus grouping per video and the rows of the answer
        in_process.append(time.perf_counter() - t)
    hasher = QueryHasher(load_model(layout, index.manifest["model_id"]))
    encoder = []
    for number in range(args.queries):
        t = time.perf_counter()
        hasher.text_codes([f"a red square number {number} slides left"])
        encoder.append(time.perf_counter() - t)
    del index, hasher

    results: dict = {"codes": args.codes, "bits": args.bits, "clip_arch": args.clip_arch,
                     "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                     "build_seconds": round(build_seconds, 1)}
    port = free_port()
    server = start_server(layout.root, port, args.work_dir / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            service_total, service_search, service_encode = [], [], []
            for number in range(args.queries + 5):
                t = time.perf_counter()
                reply = http.get("/api/search", params={"q": f"a red square number {number} slides left", "k": 10})
                elapsed = time.perf_counter() - t
                reply.raise_for_status()
                if number < 5:
                    continue  # warm-up: the first requests pay one-off costs (thread pool, allocator)
                service_total.append(elapsed)
                timing = dict(part.strip().split(";dur=") for part in reply.headers["Server-Timing"].split(","))
                service_encode.append(float(timing["encode"]) / 1000)
                service_search.append(float(timing["search"]) / 1000)
            # The HTTP round trip without the encoder: total minus the encoder's share, per request.
            service_without_encoder = [total - enc for total, enc in zip(service_total, service_encode)]
            results["single_query"] = {
                "faiss_direct_ms": median_ms(direct),
                "in_process_search_ms": median_ms(in_process),
                "service_search_ms": median_ms(service_search),
                "service_http_without_encoder_ms": median_ms(service_without_encoder),
                "service_total_ms": median_ms(service_total),
                "text_encoder_ms": median_ms(encoder),
                "service_encoder_ms": median_ms(service_encode),
                "service_search_over_faiss": round(statistics.median(service_search) / statistics.median(direct), 3),
                "service_http_over_faiss": round(statistics.median(service_without_encoder)
                                                 / statistics.median(direct), 3),
            }
            print(json.dumps(results["single_query"], indent=2), flush=True)
            results["load"] = load_test(url, layout, args, set_current)
            results["version_switches"] = http.get("/api/index").json()["version_switches"]
    finally:
        server.terminate()
        server.wait(60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


def load_test(url: str, layout, args: argparse.Namespace, set_current) -> dict:
    latencies, errors, versions, stop = [], [], set(), threading.Event()

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    reply = http.get("/api/search", params={"q": f"client {number} query", "k": 10})
                    body = reply.json()
                    if reply.status_code != 200 or reply.headers["X-Reelhash-Version"] != str(body["version"]):
                        errors.append(f"{reply.status_code} {reply.text[:200]}")
                    versions.add(body.get("version"))
                except Exception as error:
                    errors.append(repr(error))
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    switches, deadline = 0, time.monotonic() + args.load_seconds
    while time.monotonic() < deadline:
        time.sleep(min(5.0, args.load_seconds / 6))
        set_current(layout, "bench", 1 if switches % 2 else 2)  # publish and rollback end with exactly this write
        switches += 1
    stop.set()
    for thread in threads:
        thread.join()
    return {"clients": args.clients, "seconds": args.load_seconds, "requests": len(latencies), "errors": len(errors),
            "error_examples": errors[:3], "versions_seen": sorted(v for v in versions if v is not None),
            "current_moves": switches, "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
            "requests_per_second": round(len(latencies) / args.load_seconds, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
