"""DSMHN on a generated sample collection, through the whole pipeline, at several bit lengths.

Steps, all real: ``make_sample_collection`` writes N H.264 videos → the Prefect flow ``index_collection``
catalogs them with the random-weights tiny CLIP (the features of the ITQ baseline; not published) → the
flow ``train_hasher`` decodes the clips with Ray into the clip cache, trains one DSMHN model per bit length
and, at 64 bits, the 2-D per-frame ablation → held-out mAP@all with both relevance rules (shares a label /
same label set), motion mAP and ITQ on the random CLIP, written as JSON and a markdown table.

    .venv/bin/python benchmarks/dsmhn_sample.py --videos 1500 --bits 64            # ~30 min on 2 cores
    .venv/bin/python benchmarks/dsmhn_sample.py --videos 200 --bits 16,32,64,128   # the demo's collection
    .venv/bin/python benchmarks/dsmhn_sample.py --videos 60 --bits 16 --set epochs=2 --no-ablation  # smoke

Bit lengths can also be trained by separate processes (e.g. ``OMP_NUM_THREADS=1``, one ``--bits`` and
``--out`` each, after one run has generated and cataloged the collection) and their results combined into
one table::

    .venv/bin/python benchmarks/dsmhn_sample.py --videos 1500 --merge a.json b.json --out all.json

The collection and the store go under ``--work`` (default ``benchmarks/work/``, git-ignored) and are reused
when the same N and seed ask again, so a second run only trains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE_KEYS = ("text_to_video.mAP_exact", "video_to_text.mAP_exact", "text_to_video.mAP_any",
              "video_to_text.mAP_any", "text_to_video.motion_mAP", "video_to_text.motion_mAP")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=1500, help="videos in the generated collection")
    parser.add_argument("--seed", type=int, default=1, help="seed of the collection (the demo uses 0)")
    parser.add_argument("--bits", default="64", help="comma-separated bit lengths, e.g. 16,32,64,128")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a DSMHN option (config or training), as for `reelhash train --set`")
    parser.add_argument("--no-ablation", action="store_true", help="skip the 2-D per-frame ablation model")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work", help="collection + store")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/dsmhn_sample_<N>.json; .md beside it)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="no training: combine the results JSON of runs on the same collection (e.g. bit "
                             "lengths trained in parallel processes) into --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.merge:
        return write_result(merge_results([json.loads(path.read_text()) for path in args.merge]), args)
    from flows.cli import parse_options, prepare_environment

    prepare_environment()
    from flows.config import IndexRunConfig
    from flows.index_collection import index_collection
    from flows.train_hasher import train_hasher
    from pipeline.sample_collection import existing_sample_collection, make_sample_collection
    from pipeline.training.base import TrainRunConfig

    name = f"sample{args.videos}s{args.seed}"
    directory = args.work / name
    store = args.work / f"store-{name}"
    options = {**parse_options(args.overrides), "ablation": not args.no_ablation}
    bits = [int(b) for b in args.bits.split(",")]
    timings: dict[str, float] = {}

    started = time.monotonic()
    manifest = existing_sample_collection(directory, args.videos) or make_sample_collection(
        directory, args.videos, args.seed, progress=True)
    timings["generate_s"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    encoder = {"arch": "reelhash-tiny", "allow_random_weights": True}
    index_collection(IndexRunConfig(source=str(manifest), collection=name, index=name, store=str(store),
                                    encoder=encoder, method="itq", bits=64, publish=False))
    timings["catalog_s"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    trained = train_hasher(TrainRunConfig(method="dsmhn", collection=name, store=str(store), bits=bits,
                                          encoder=encoder, options=options))
    timings["train_s"] = round(time.monotonic() - started, 1)
    report = json.loads((Path(trained["report_dir"]) / "metrics.json").read_text())

    result = {
        "collection": {"videos": args.videos, "seed": args.seed, "train_videos": trained["prepared"]["train_videos"],
                       "test_videos": trained["prepared"]["test_videos"]},
        "options": options,
        "models": [{"bits": m["n_bits"], "seconds": round(m["seconds"], 1), "metrics": m["metrics"]}
                   for m in trained["models"]],
        "extra": report["extra"],
        "timings": timings,
        "report_dir": trained["report_dir"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": _torch_threads()},
    }
    return write_result(result, args)


def write_result(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    out = args.out or ROOT / "benchmarks" / "results" / f"dsmhn_sample_{result['collection']['videos']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = format_table(result)
    out.with_suffix(".md").write_text(table + "\n")
    print("\n" + table)
    return result


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs on the same collection: their models side by side, the first ablation and baselines.

    Each run's options and timings are kept under ``runs``; a bit length trained by two runs is an error
    (which one would the table show?).
    """
    collections = {json.dumps(r["collection"], sort_keys=True) for r in results}
    if len(collections) != 1:
        raise SystemExit(f"--merge needs runs on the same collection and split, got {sorted(collections)}")
    models = sorted((m for r in results for m in r["models"]), key=lambda m: m["bits"])
    bits = [m["bits"] for m in models]
    if len(set(bits)) != len(bits):
        raise SystemExit(f"--merge: a bit length was trained by more than one run: {bits}")
    extra: dict[str, Any] = {}
    for result in results:
        for key, value in result["extra"].items():
            extra.setdefault(key, value)
    return {"collection": results[0]["collection"], "models": models, "extra": extra,
            "runs": [{key: r.get(key) for key in ("options", "timings", "machine", "report_dir")}
                     | {"bits": [m["bits"] for m in r["models"]]} for r in results]}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def format_table(result: dict[str, Any]) -> str:
    from pipeline.training.dsmhn import chance_row, table_row

    collection = result["collection"]
    lines = [
        f"Generated sample collection: {collection['videos']} videos (seed {collection['seed']}), "
        f"{collection['train_videos']} train / {collection['test_videos']} held-out test videos. "
        "mAP@all over the Hamming ranking; *exact* = same label set, *any* = shares a label, *motion* = "
        "shares a motion label.",
        "",
        "| model | bits | train s | t→v exact | v→t exact | t→v any | v→t any | t→v motion | v→t motion |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("DSMHN (3-D video stream)", model["bits"], model["seconds"], model["metrics"])
            for model in sorted(result["models"], key=lambda m: m["bits"])]
    extra = result["extra"]
    bits = extra.get("ablation_bits")
    if "ablation_2d" in extra:
        ablation = extra["ablation_2d"]
        rows.append(("DSMHN, 2-D per-frame stream + mean pooling", bits, ablation.get("seconds"), ablation))
    rows += [(label, bits, None, baseline["metrics"])
             for label, baseline in (extra.get("itq_baselines") or {}).items() if baseline["metrics"] is not None]
    for label, row_bits, seconds, metrics in rows:
        seconds_cell = f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "–"
        lines.append(table_row((label, str(row_bits), seconds_cell), metrics, TABLE_KEYS))
    lines.append(chance_row(result["models"][0]["metrics"], TABLE_KEYS, leading=("chance", "—", "–")))
    lines.append("")
    for run in result.get("runs") or [result]:
        timings = run["timings"]
        models = f"bits {', '.join(map(str, run['bits']))}: " if "bits" in run else ""
        lines.append(f"{models}options {run['options']}; generation {timings['generate_s']} s, catalog "
                     f"{timings['catalog_s']} s, decode + training + evaluation {timings['train_s']} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
