"""Feature-level benchmark of CLIP4Hashing vs LSH / ITQ vs float cosine, on generated CLIP-like pairs.

No pretrained CLIP weights are available offline, so this measures the hashing methods on paired
video/caption embeddings from ``benchmarks/synthetic_clip.py`` (a shared semantic latent,
a modality gap, modality-specific variation, several captions per training video, near-duplicate
videos; calibrated so the float ranking looks like frozen CLIP ViT-B/32 on MSR-VTT 1k-A). It says
nothing about quality on real CLIP features: use ``reelhash eval-features`` for those.

Writes JSON and a markdown table (results/clip4hashing_features.{json,md}).

    .venv/bin/python benchmarks/clip4hashing_features.py                 # full run (see docs for the time)
    .venv/bin/python benchmarks/clip4hashing_features.py --quick         # a smoke run, under a minute
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from hashing.methods.clip4hashing.comparison import (
    BENCHMARK_BITS,
    ComparisonOptions,
    compare_methods,
    format_table,
    group_pairs,
)
from hashing.methods.clip4hashing.config import Clip4HashingTrainOptions
from hashing.methods.clip4hashing.retrieval import TIE_POLICY
from synthetic_clip import SyntheticClipConfig, SyntheticClipWorld


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-videos", type=int, default=5000, help="distinct training videos")
    parser.add_argument("--captions", type=int, default=2, help="captions per training video (pairs = videos x captions)")
    parser.add_argument("--test-videos", type=int, default=1000, help="test videos, one caption each (like MSR-VTT 1k-A)")
    parser.add_argument("--bits", default=",".join(map(str, BENCHMARK_BITS)))
    parser.add_argument("--epochs", type=int, default=None, help="CLIP4Hashing epochs (default: the train options default)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=512,
                        help="hidden width (default 512 to fit 2 CPU cores; the method default is 8 x dim = 4096)")
    parser.add_argument("--cosine-target-bits", default="64,2048",
                        help="bit lengths at which the cosine-target ablation is retrained ('all' = every one)")
    parser.add_argument("--no-ablations", action="store_true", help="skip sign-at-zero / eval-set min-max / cosine target")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated world and of training")
    parser.add_argument("--quick", action="store_true", help="small smoke run: 300 videos, 64 and 256 bits, 2 epochs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/clip4hashing_features.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.train_videos, args.test_videos, args.bits, args.epochs = 300, 300, "64,256", 2
        args.cosine_target_bits = "64"
    world = SyntheticClipWorld(SyntheticClipConfig(seed=args.seed))
    train = world.sample(args.train_videos, args.captions, seed=args.seed + 1)
    test = world.sample(args.test_videos, 1, seed=args.seed + 2)
    train_options = {"seed": args.seed, "device": "cpu"}
    for key in ("epochs", "batch_size"):
        if getattr(args, key) is not None:
            train_options[key] = getattr(args, key)
    options = ComparisonOptions(
        bits=[int(b) for b in args.bits.split(",")],
        ablations=not args.no_ablations,
        cosine_target_bits=None if args.cosine_target_bits == "all" else [int(b) for b in args.cosine_target_bits.split(",")],
        clip4hashing={"hidden": args.hidden} if args.hidden else {},
        train=Clip4HashingTrainOptions(**train_options),
        seed=args.seed,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    result = compare_methods(train.video, train.text, group_pairs(test.video, test.text), options, log=print)
    result["seconds"] = round(time.perf_counter() - started, 1)
    # CPU seconds of all threads: on a shared machine the wall time says more about the neighbours.
    result["cpu_seconds"] = round(time.process_time() - cpu_started, 1)
    result["generator"] = SyntheticClipConfig(seed=args.seed).model_dump()
    result["split"] = {"train_videos": args.train_videos, "captions_per_train_video": args.captions,
                       "test_videos": args.test_videos, "captions_per_test_video": 1}
    result["machine"] = {"platform": platform.platform(), "torch_threads": torch.get_num_threads()}

    table = format_table(result)
    print(f"\n{table}\n\nties: {TIE_POLICY}\ntotal {result['seconds']} s wall, {result['cpu_seconds']} s CPU")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(
        f"{table}\n\nTies: {TIE_POLICY}. Train: {len(train.video)} pairs ({args.train_videos} videos x "
        f"{args.captions} captions); test: {args.test_videos} videos x 1 caption; generated CLIP-like features "
        f"(not real CLIP). Total time {result['seconds']} s wall, {result['cpu_seconds']} s CPU.\n"
    )
    return result


if __name__ == "__main__":
    main()
