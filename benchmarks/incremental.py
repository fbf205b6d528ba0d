"""Incremental nightly runs: does the cost follow the change? Full run vs nothing / 1% / 10% changed.

Generates a sample collection of N videos (outside the repo), registers it with its manifest in a fresh
store, runs ``nightly_reindex`` once from scratch (the full run: decode, encode, fit ITQ, hash, evaluate,
publish), then in the same process and store:

(a) nothing changed;
(b) 1% of the files changed (each overwritten with another file's bytes, its manifest row updated);
(c) 10% changed, a mix of added, modified and deleted files.

Each run is timed (wall seconds of the flow call) and split into its Prefect tasks (plan, extract, fit,
hash, evaluate, publish; read back from the Prefect API). The decoded video ids are checked against the
change made. The no-change run is the fixed per-run overhead (fingerprinting every file, loading the
features to hash and evaluate, publishing, Prefect bookkeeping); "above overhead" is a run's cost minus
that. Starting Ray and the ephemeral Prefect API is timed separately: a process pays it once (a scheduled
run in a fresh process pays it every night).

    .venv/bin/python benchmarks/incremental.py --videos 100 --work-dir /tmp/reelhash-incremental
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from flows.cli import prepare_environment  # imports neither prefect nor ray

# The ephemeral Prefect API of this process, without phoning home; set before prefect is imported.
os.environ.pop("PREFECT_API_URL", None)
prepare_environment()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from prefect import flow  # noqa: E402

from flows.config import NightlyConfig  # noqa: E402
from flows.nightly_reindex import nightly_reindex  # noqa: E402
from pipeline.catalog import video_id  # noqa: E402
from pipeline.ray_runtime import RayConfig, ensure_ray  # noqa: E402
from pipeline.registry import add_collection  # noqa: E402
from pipeline.sample_collection import MANIFEST_SCHEMA, make_sample_collection  # noqa: E402
from pipeline.store import StoreLayout  # noqa: E402

COLLECTION = "bench"
INDEX = "bench"
REPO_ROOT = Path(__file__).resolve().parent.parent
# Task-name prefixes of the flow (flows/index_collection.py), in pipeline order.
TASKS = ("plan", "extract", "fit", "hash", "evaluate", "publish")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=100, help="N, the collection size of the full run")
    parser.add_argument("--work-dir", type=Path, required=True,
                        help="outside the repo: generated videos (reused), the collection copy and the store")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "incremental.json")
    args = parser.parse_args(argv)
    if args.videos < 20:
        parser.error("--videos must be at least 20 (10% of the files must be a mix of add, modify and delete)")
    if args.work_dir.resolve().is_relative_to(REPO_ROOT):
        parser.error(f"--work-dir must be outside the repository {REPO_ROOT}")
    return args


# ---------------------------------------------------------------------------- the collection


def change_plan(n_videos: int) -> dict[str, int]:
    """How many files each scenario touches: 1% modified; 10% split into ~40% added, 30% modified, 30% deleted."""
    ten = max(3, round(0.10 * n_videos))
    deleted = max(1, round(0.3 * ten))
    modified = max(1, round(0.3 * ten))
    return {"one_percent_modified": max(1, round(0.01 * n_videos)),
            "ten_added": ten - deleted - modified, "ten_modified": modified, "ten_deleted": deleted}


def pristine_videos(work_dir: Path, n_total: int, seed: int) -> tuple[Path, list[dict]]:
    """N + extra generated videos, reused across benchmark runs with the same size and seed."""
    root = work_dir / f"pristine-n{n_total}-seed{seed}"
    manifest = root / "manifest.parquet"
    if not manifest.exists():
        started = time.perf_counter()
        make_sample_collection(root, n_total, seed=seed, progress=True)
        print(f"generated {n_total} videos in {time.perf_counter() - started:.0f} s")
    return root, pq.read_table(manifest).to_pylist()


class Collection:
    """The live collection directory and its manifest; the benchmark edits both like an archive would change."""

    def __init__(self, directory: Path, rows: list[dict]):
        self.directory = directory
        self.rows = list(rows)

    def write_manifest(self) -> Path:
        path = self.directory / "manifest.parquet"
        pq.write_table(pa.Table.from_pylist(self.rows, schema=MANIFEST_SCHEMA), path)
        return path

    def add(self, pristine: Path, row: dict) -> str:
        shutil.copy(pristine / row["uri"], self.directory / row["uri"])
        self.rows.append(row)
        return row["uri"]

    def modify(self, target: dict, source: dict) -> str:
        """Overwrite ``target``'s file with ``source``'s bytes: new content (and description) under the old name."""
        shutil.copy(self.directory / source["uri"], self.directory / target["uri"])
        # The manifest describes the new content, so evaluation stays meaningful.
        self.rows[self.rows.index(target)] = {**source, "uri": target["uri"]}
        return target["uri"]

    def delete(self, target: dict) -> str:
        (self.directory / target["uri"]).unlink()
        self.rows.remove(target)
        return target["uri"]


def build_collection(pristine: Path, rows: list[dict], directory: Path) -> Collection:
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "videos").mkdir(parents=True)
    for row in rows:
        shutil.copy(pristine / row["uri"], directory / row["uri"])
    collection = Collection(directory, rows)
    collection.write_manifest()
    return collection


# ---------------------------------------------------------------------------- measuring one run


def task_seconds(flow_run_id) -> dict[str, float]:
    """Seconds per task of one flow run, from the Prefect API (task states may arrive a moment late)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        for _ in range(20):
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if runs and all(run.end_time is not None for run in runs):
                break
            time.sleep(0.5)
    seconds: dict[str, float] = {}
    for run in runs:
        name = run.name.split(" ")[0].split("-")[0]
        if run.start_time and run.end_time:
            seconds[name] = round(seconds.get(name, 0.0) + (run.end_time - run.start_time).total_seconds(), 2)
    return seconds


def timed_run(label: str, config: NightlyConfig, expected_decoded: set[str] | None) -> dict[str, Any]:
    print(f"\n=== {label}")
    started = time.perf_counter()
    state = nightly_reindex(config, return_state=True)
    wall = time.perf_counter() - started
    result = state.result()
    collection = result["collections"][COLLECTION]
    counts = collection["counts"]
    tasks = task_seconds(state.state_details.flow_run_id)
    decoded = set(collection["decoded_video_ids"])
    row = {
        "scenario": label,
        "wall_s": round(wall, 2),
        "tasks_s": tasks,
        "outside_tasks_s": round(wall - sum(tasks.values()), 2),
        "files": counts["files"],
        "new": counts.get("new"), "changed": counts.get("changed"), "deleted": counts.get("deleted"),
        "unchanged": counts.get("unchanged"),
        "decoded": counts["decoded"],
        "from_cache": counts["from_cache"],
        "videos_indexed": counts["videos_indexed"],
        "published_version": result["published"] and result["published"]["version"],
        "published_new_version": bool(result["published"] and result["published"]["published"]),
        "decoded_as_expected": None if expected_decoded is None else decoded == expected_decoded,
    }
    if expected_decoded is not None and decoded != expected_decoded:
        print(f"!! decoded {sorted(decoded)} but the change touched {sorted(expected_decoded)}")
    print(json.dumps(row))
    return row


def start_runtimes() -> dict[str, float]:
    """Start Ray and the ephemeral Prefect API before timing, so the full run is not charged for them."""

    @flow(name="warm-up")
    def warm_up() -> None:
        return None

    started = time.perf_counter()
    ensure_ray(RayConfig(progress_bars=False))
    ray_s = time.perf_counter() - started
    started = time.perf_counter()
    warm_up()
    return {"ray_start_s": round(ray_s, 2), "prefect_api_start_s": round(time.perf_counter() - started, 2)}


# ---------------------------------------------------------------------------- the benchmark


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.videos
    plan = change_plan(n)
    pristine, pool = pristine_videos(args.work_dir, n + plan["ten_added"], args.seed)
    initial, spare = pool[:n], pool[n:]
    collection = build_collection(pristine, initial, args.work_dir / "collection")
    store = args.work_dir / "store"
    if store.exists():
        shutil.rmtree(store)
    layout = StoreLayout(store)
    add_collection(layout, COLLECTION, str(collection.directory), manifest=str(collection.directory / "manifest.parquet"),
                   index=INDEX)
    startup = start_runtimes()
    # force_publish: with random CLIP weights the metrics are noise, and the quality gate must not stop a
    # scenario on that noise; the gate's comparison still runs (and costs what it costs).
    config = NightlyConfig(index=INDEX, store=str(store), encoder={"arch": args.arch, "allow_random_weights": True},
                           method="itq", bits=args.bits, seed=args.seed, force_publish=True,
                           ray={"progress_bars": False})

    def ids(uris: list[str]) -> set[str]:
        return {video_id(COLLECTION, uri) for uri in uris}

    rows = [timed_run("full run (from scratch)", config, ids([r["uri"] for r in initial]))]
    rows.append(timed_run("(a) nothing changed", config, set()))

    # (b) 1%: overwrite files with the bytes of files further down the list.
    k = plan["one_percent_modified"]
    touched = [collection.modify(collection.rows[i], collection.rows[-1 - i]) for i in range(k)]
    collection.write_manifest()
    rows.append(timed_run(f"(b) 1% changed ({k} modified)", config, ids(touched)))

    # (c) 10%: add new files, modify others, delete others (none of them touched in (b)).
    added = [collection.add(pristine, row) for row in spare]
    middle = len(initial) // 2
    modified = [collection.modify(collection.rows[middle + i], collection.rows[k + i])
                for i in range(plan["ten_modified"])]
    victims = [collection.rows[middle - 1 - i] for i in range(plan["ten_deleted"])]
    for victim in victims:
        collection.delete(victim)
    collection.write_manifest()
    rows.append(timed_run(f"(c) 10% changed ({len(added)} added, {len(modified)} modified, {len(victims)} deleted)",
                          config, ids(added + modified)))

    full, overhead = rows[0]["wall_s"], rows[1]["wall_s"]
    for row in rows:
        row["ratio_to_full"] = round(row["wall_s"] / full, 3)
        row["above_overhead_s"] = round(row["wall_s"] - overhead, 2)
        row["above_overhead_ratio"] = round((row["wall_s"] - overhead) / (full - overhead), 3) if full > overhead else None
    return {
        "benchmark": "incremental nightly_reindex",
        "videos": n, "arch": args.arch, "random_weights": True, "method": "itq", "bits": args.bits,
        "change_plan": plan, "startup": startup, "runs": rows, "extract_fit": extract_cost_model(rows),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "note": "Shared, noisy machine: compare the runs within one result, not across results.",
    }


def extract_cost_model(rows: list[dict]) -> dict[str, float] | None:
    """Least-squares line through (decoded videos, extract seconds) of the runs that decoded something.

    The intercept is what any extraction pays before its first video (Ray Data plan, encoder actor start,
    model load); the slope is the marginal cost of one video.
    """
    points = [(row["decoded"], row["tasks_s"].get("extract")) for row in rows
              if row["decoded"] and row["tasks_s"].get("extract") is not None]
    if len({x for x, _ in points}) < 2:
        return None
    slope, intercept = np.polyfit([x for x, _ in points], [y for _, y in points], 1)
    return {"start_up_s": round(float(intercept), 2), "per_video_s": round(float(slope), 3), "points": len(points)}


def markdown(result: dict[str, Any]) -> str:
    header = ("| scenario | wall s | ratio to full | above overhead (ratio) | decoded | new/changed/deleted | "
              + " | ".join(f"{t} s" for t in TASKS) + " | outside tasks s | as expected |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in result["runs"]:
        above = row["above_overhead_ratio"]
        lines.append(
            f"| {row['scenario']} | {row['wall_s']:.1f} | {row['ratio_to_full']:.3f} | "
            f"{row['above_overhead_s']:.1f} s ({'-' if above is None else f'{above:.3f}'}) | {row['decoded']} | "
            f"{row['new']}/{row['changed']}/{row['deleted']} | "
            + " | ".join(f"{row['tasks_s'].get(t, 0.0):.1f}" for t in TASKS)
            + f" | {row['outside_tasks_s']:.1f} | {row['decoded_as_expected']} |"
        )
    start = result["startup"]
    lines.append(f"\nN={result['videos']}, {result['arch']} (random weights), ITQ {result['bits']} bits. "
                 f"Once per process (not in the rows): Ray start {start['ray_start_s']} s, "
                 f"Prefect API start {start['prefect_api_start_s']} s. Overhead = the no-change run.")
    if result["extract_fit"]:
        fit = result["extract_fit"]
        lines.append(f"Extract seconds ≈ {fit['start_up_s']} s start-up + {fit['per_video_s']} s × decoded videos "
                     f"(least squares over the {fit['points']} runs that decoded something).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    result = run(args)
    print("\n" + markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged_results(args.out, result), indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")


def merged_results(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The results file keeps one entry per (N, arch, bits): a run at another size adds to it, the same size replaces."""
    key = (result["videos"], result["arch"], result["bits"])
    previous = json.loads(path.read_text()).get("results", []) if path.exists() else []
    kept = [r for r in previous if (r.get("videos"), r.get("arch"), r.get("bits")) != key]
    return {"benchmark": "incremental nightly_reindex",
            "results": sorted(kept + [result], key=lambda r: (r["arch"], r["bits"], r["videos"]))}


if __name__ == "__main__":
    main()
