"""Resuming a killed run, and indexing from an object store, against a clean local run — side by side.

One generated collection, one Ray head node and one Prefect API shared by every run (so each run pays the same
small start-up), each run a separate ``reelhash index`` process:

(a) full: media and store on local disk, a clean run;
(b) killed: the same, killed by SIGKILL (crash point ``extract.unit_committed``) once half of the units are
    committed; (c) resumed: the same command again, which must reuse those units;
(d) s3: media and store only in a local S3-compatible server (SeaweedFS on the loopback), a clean run.

Reported: wall seconds, (c)/(a) — the acceptance bound is 0.60 — and (d)/(a) — bound 1.30 —, the reused
counts, and that (c) and (d) published the same codes as (a).

    .venv/bin/python benchmarks/resume.py --videos 200 --unit-videos 25 --work-dir /tmp/reelhash-resume
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

from flows.cli import prepare_environment  # noqa: E402  (imports neither prefect nor ray)

os.environ.pop("PREFECT_API_URL", None)
prepare_environment()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _load_s3_server_helper():
    """tests/s3_server.py, loaded by path: putting tests/ on sys.path would shadow the packages (tests mirror them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("s3_server", REPO_ROOT / "tests" / "s3_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["s3_server"] = module  # dataclasses look their module up while the class is being made
    spec.loader.exec_module(module)
    return module


s3_server = _load_s3_server_helper()
make_bucket, pick_ports = s3_server.make_bucket, s3_server.pick_ports
start_s3_server, upload_collection = s3_server.start_s3_server, s3_server.upload_collection


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=200, help="videos in the collection (default 200)")
    parser.add_argument("--unit-videos", type=int, default=25, help="videos per committed unit (default 25)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/reelhash-resume"))
    parser.add_argument("--clip-arch", default="ViT-B-32", help="encoder architecture (random weights)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "resume.json")
    return parser.parse_args(argv)


def index_command(source: str, store: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "index", source, "--collection", "bench", "--index", "bench",
            "--store", store, "--clip-arch", args.clip_arch, "--random-weights", "--method", "lsh",
            "--unit-videos", str(args.unit_videos), "--json"]


def timed(command: list[str], env: dict, failpoint: str | None = None) -> tuple[float, dict | None, int]:
    env = {**env, **({"REELHASH_FAILPOINTS": failpoint} if failpoint else {})}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, start_new_session=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, -9):
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-3000:]}")
    return seconds, (json.loads(done.stdout) if done.returncode == 0 else None), done.returncode


def published_codes(store: str) -> list:
    from pipeline.search import PublishedIndex
    from pipeline.store import StoreLayout

    index = PublishedIndex.open(StoreLayout.from_option(store), "bench")
    return sorted((v, c, bytes(code)) for t in index.ids
                  for v, c, code in zip(t["video_id"].to_pylist(), t["clip_idx"].to_pylist(), t["code"].to_pylist()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.sample_collection import make_sample_collection

    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = make_sample_collection(work / "media", args.videos, seed=3, progress=True)
    s3 = start_s3_server(work / "s3")
    os.environ.update(s3.env)
    make_bucket(s3, "bench")
    upload_collection(work / "media", "s3://bench/media")
    [port] = pick_ports(1)
    ray_temp = f"/tmp/rh-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run([sys.executable.replace("python", "ray"), "start", "--head", f"--port={port}",
                    f"--temp-dir={ray_temp}", "--include-dashboard=false", "--disable-usage-stats",
                    f"--num-cpus={max(4, 2 * (os.cpu_count() or 1))}"], check=True, capture_output=True)
    results: dict = {"videos": args.videos, "unit_videos": args.unit_videos, "clip_arch": args.clip_arch,
                     "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    try:
        with prefect_test_harness(server_startup_timeout=180):
            env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "PREFECT_API_URL": PREFECT_API_URL.value()}
            full_s, full, _ = timed(index_command(str(manifest), str(work / "store-full"), args), env)
            units = -(-args.videos // args.unit_videos)
            killed_s, _, status = timed(index_command(str(manifest), str(work / "store-resume"), args), env,
                                        failpoint=f"extract.unit_committed:{units // 2}")
            resumed_s, resumed, _ = timed(index_command(str(manifest), str(work / "store-resume"), args), env)
            s3_s, on_s3, _ = timed(index_command("s3://bench/media/", "s3://bench/store", args), env)
            same_resumed = published_codes(str(work / "store-full")) == published_codes(str(work / "store-resume"))
            same_s3 = published_codes(str(work / "store-full")) == published_codes("s3://bench/store")
    finally:
        subprocess.run(["pkill", "-9", "-f", ray_temp], check=False)
        s3.stop()
    results["runs"] = {
        "full_local": {"seconds": round(full_s, 1), "counts": full["counts"]},
        "killed_at_half": {"seconds": round(killed_s, 1), "exit_status": status, "units": units,
                           "killed_after_units": units // 2},
        "resumed": {"seconds": round(resumed_s, 1), "counts": resumed["counts"], "same_codes_as_full": same_resumed},
        "s3_media_and_store": {"seconds": round(s3_s, 1), "counts": on_s3["counts"], "same_codes_as_full": same_s3},
    }
    results["resumed_over_full"] = round(resumed_s / full_s, 3)
    results["s3_over_local"] = round(s3_s / full_s, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
