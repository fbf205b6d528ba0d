"""Decoding every frame vs our clip sampling, side by side on the same files in one run.

Writes long H.264 test videos with PyAV (x264 defaults: keyframe every 250 frames, B-frames) — one
720p and one smaller — then times, per file:

1. PyAV decoding every frame and converting it to RGB (what "decode everything, then sample" costs);
2. ``decode_clips`` in uniform mode (exact frames at segment centres; PyAV, the default, which skips the frames
   nothing refers to) and read with decord instead (how uniform mode was read before 2026-12-04);
3. ``decode_clips`` in keyframe mode (keyframes and the frames right after them; PyAV, the default);
4. keyframe mode read with decord instead (how it was read before 2026-12-04), and with PyAV scaling by
   swscale's fast bilinear instead of bilinear (evaluated, not used: see ``pixels_vs_decord``);
5. for reference, one clip per read, and uniform sampling without the ``seek(0)`` reset after each
   ``get_batch`` (decord directly; what the memory workaround costs when clips share a GOP);
6. opening a ``VideoSource`` alone, with either decoder.

All decoders use one thread. "Frames decoded" for the sampled rows is estimated from the plan and the
keyframe index by replaying decord's seek rule (B-frame reordering adds a few; the PyAV reader's skipped frames
are not taken off). Wall and CPU seconds are both reported: on a shared machine the CPU columns are the stable
ones. ``pixels_vs_decord`` is the mean absolute difference (0…255) of each PyAV variant's frames from decord's
frames of the same sampling mode. Prints a markdown table and writes JSON.

    .venv/bin/python benchmarks/decode_sampling.py                    # 60 s files in a temp dir
    .venv/bin/python benchmarks/decode_sampling.py --seconds 20 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any
from unittest import mock

import av
import decord
import numpy as np

from pipeline import decode
from pipeline.decode import VideoSource
from pipeline.sample_collection import ObjectSpec, VideoSpec, encode_mp4, render_frames
from pipeline.sampling import SamplingConfig, decode_clips, group_clip_reads, plan_clips

# (label, width, height, fps)
TEST_FILES = (("720p", 1280, 720, 25), ("360p", 640, 360, 30))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where test videos are written (reused if present); default: a temp dir, removed")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each test video")
    parser.add_argument("--keyint", type=int, default=250, help="x264 keyframe interval (250 is x264's default)")
    parser.add_argument("--frame-size", type=int, default=224, help="S of the S×S frames sampled")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--frames-per-clip", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; the median is reported")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "decode_sampling.json")
    return parser.parse_args(argv)


def write_test_video(path: Path, width: int, height: int, fps: int, seconds: float, keyint: int) -> None:
    """Two shapes moving over a grainy background, x264 'medium' GOP structure (B-frames, long GOP)."""
    spec = VideoSpec(
        name=path.stem, width=width, height=height, pix_fmt="yuv420p", fps=Fraction(fps),
        n_frames=round(seconds * fps), keyframe_interval=keyint, background="noise", background_seed=7,
        objects=(
            ObjectSpec("star", "yellow", "right", 0.15, 0.9, (0.2, 0.3), 0.0),
            ObjectSpec("square", "red", "rotate", 0.12, 0.6, (0.7, 0.6), 0.5),
        ),
        split="test",
    )
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(encode_mp4(render_frames(spec), spec, preset="medium"))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- methods


def pyav_every_frame(path: str) -> tuple[int, Callable[[], int]]:
    """(frames delivered, frames decoded): every frame decoded and converted to RGB at full size."""
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n, lambda: n


def sampled(mode: str, frame_size: int, config_args: dict[str, Any], max_frames_per_read: int = 64,
            decoder: str | None = None,
            interpolation: str | None = None) -> Callable[[str], tuple[int, Callable[[], int]]]:
    """``decode_clips`` as the pipeline runs it (``decoder``/``interpolation``: a variant of it)."""
    config = SamplingConfig(mode=mode, **config_args)

    def run(path: str) -> tuple[int, Callable[[], int]]:
        delivered = 0
        plans = []
        with scaler(interpolation):
            for plan, frames in decode_clips(path, config, frame_size, max_frames_per_read=max_frames_per_read,
                                             decoder=decoder):
                delivered += frames.shape[0]
                plans.append(plan)

        def decoded() -> int:
            keys = _key_indices(path)
            groups = group_clip_reads(plans, keys, max_frames_per_read)
            reads = [[i for plan in group for i in plan.frame_indices] for group in groups]
            return estimated_decoded(keys, reads, reset_between_reads=True)

        return delivered, decoded

    return run


def scaler(interpolation: str | None) -> Any:
    """The PyAV decoder's swscale algorithm for a variant row (None: the default)."""
    if interpolation is None:
        return contextlib.nullcontext()
    return mock.patch.object(decode, "_PYAV_INTERPOLATION", interpolation)


def pixels_vs_decord(path: str, frame_size: int, config_args: dict[str, Any]) -> dict[str, float]:
    """Mean |difference| (0…255) of each PyAV variant's frames from decord's frames of the same mode."""
    result = {}
    for name, mode, interpolation in (("uniform", "uniform", None), ("keyframe", "keyframe", None),
                                      ("keyframe_fast_bilinear", "keyframe", "FAST_BILINEAR")):
        config = SamplingConfig(mode=mode, **config_args)
        reference = np.concatenate([f for _, f in decode_clips(path, config, frame_size, decoder="decord")])
        with scaler(interpolation):
            frames = np.concatenate([f for _, f in decode_clips(path, config, frame_size, decoder="pyav")])
        result[name] = float(np.abs(frames.astype(int) - reference).mean())
    return result


def uniform_without_reset(frame_size: int,
                          config_args: dict[str, Any]) -> Callable[[str], tuple[int, Callable[[], int]]]:
    """Uniform sampling straight on decord, one get_batch per clip and no seek(0) in between: fast, but
    decord's decoder thread runs ahead and fills memory while the caller is busy (dmlc/decord#157)."""
    config = SamplingConfig(mode="uniform", **config_args)

    def run(path: str) -> tuple[int, Callable[[], int]]:
        with VideoSource(path, frame_size) as source:  # only for the probe info and the decode size
            info = source.info
            width, height = source.decode_size
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
        plans = plan_clips(info, config)
        delivered = 0
        for plan in plans:
            delivered += reader.get_batch(list(plan.frame_indices)).asnumpy().shape[0]
        reads = [list(plan.frame_indices) for plan in plans]
        return delivered, lambda: estimated_decoded(_key_indices(path), reads, reset_between_reads=False)

    return run


def open_only(frame_size: int, decoder: str = "decord") -> Callable[[str], tuple[int, Callable[[], int]]]:
    """Opening a VideoSource: the header, the packet index (decord's or PyAV's: reads the whole file), keyframes."""

    def run(path: str) -> tuple[int, Callable[[], int]]:
        with VideoSource(path, frame_size, decoder=decoder) as source:
            source.key_frame_indices()
        return 0, lambda: 0

    return run


def _key_indices(path: str) -> list[int]:
    with VideoSource(path, 32) as source:
        return source.key_frame_indices()


def estimated_decoded(keys: list[int], reads: list[list[int]], reset_between_reads: bool) -> int:
    """Frames decord decodes for these get_batch reads, replaying its seek rule
    (``VideoReader::SeekAccurate``): a target in the current GOP and ahead of the position decodes on
    from the position; any other target seeks to its keyframe and decodes from there."""

    def keyframe_of(frame: int) -> int:
        return keys[max(0, bisect.bisect_right(keys, frame) - 1)]

    decoded, position = 0, 0
    for read in reads:
        for index in sorted(set(read)):
            if index < position or keyframe_of(index) != keyframe_of(position):
                decoded += index - keyframe_of(index) + 1
            else:
                decoded += index - position + 1
            position = index + 1
        if reset_between_reads:
            position = 0  # seek(0) after the get_batch
    return decoded


# ---------------------------------------------------------------------------- harness


def time_method(method: Callable[[str], tuple[int, Callable[[], int]]], path: str, repeats: int) -> dict[str, Any]:
    """Median wall and CPU seconds (CPU: all threads of this process, less sensitive to a busy machine).

    A method returns the frames it delivered and how to estimate the frames it decoded; the estimate (which
    opens the file again) runs after the clock stops."""
    wall, cpu = [], []
    delivered = decoded = 0
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        delivered, estimate_decoded = method(path)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
        decoded = estimate_decoded()
    seconds, cpu_seconds = statistics.median(wall), statistics.median(cpu)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "seconds_all": wall,
        "cpu_seconds_all": cpu,
        "frames_delivered": delivered,
        "frames_decoded": decoded,
        "delivered_per_s": delivered / seconds,
        "decoded_per_s": decoded / seconds,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config_args = {"clip_seconds": args.clip_seconds, "frames_per_clip": args.frames_per_clip}
    methods = {
        "pyav_every_frame": pyav_every_frame,
        "uniform": sampled("uniform", args.frame_size, config_args),
        "uniform_decord": sampled("uniform", args.frame_size, config_args, decoder="decord"),
        "keyframe": sampled("keyframe", args.frame_size, config_args),
        "keyframe_decord": sampled("keyframe", args.frame_size, config_args, decoder="decord"),
        "keyframe_fast_bilinear": sampled("keyframe", args.frame_size, config_args, interpolation="FAST_BILINEAR"),
        "uniform_one_clip_per_read": sampled("uniform", args.frame_size, config_args, max_frames_per_read=1),
        "keyframe_one_clip_per_read": sampled("keyframe", args.frame_size, config_args, max_frames_per_read=1),
        "uniform_no_reset": uniform_without_reset(args.frame_size, config_args),
        "open_only": open_only(args.frame_size),
        "open_only_pyav": open_only(args.frame_size, decoder="pyav"),
    }
    temp = None if args.work_dir else tempfile.TemporaryDirectory(prefix="reelhash-bench-")
    work_dir = args.work_dir or Path(temp.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "settings": {**vars(args), "work_dir": str(work_dir), "out": str(args.out)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "decord": decord.__version__,
                    "av": av.__version__},
        "files": {},
    }
    try:
        for label, width, height, fps in TEST_FILES:
            path = work_dir / f"bench_{label}_{args.seconds:g}s_k{args.keyint}.mp4"
            if not path.exists():
                start = time.perf_counter()
                write_test_video(path, width, height, fps, args.seconds, args.keyint)
                print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
            with VideoSource(path, args.frame_size) as source:
                info, keys, decode_size = source.info, source.key_frame_indices(), source.decode_size
            entry: dict[str, Any] = {
                "path": str(path), "size_bytes": path.stat().st_size, "width": width, "height": height,
                "fps": info.fps, "frame_count": info.frame_count, "duration_s": info.duration_s,
                "keyframes": len(keys), "decode_size": list(decode_size), "methods": {},
            }
            for name, method in methods.items():
                entry["methods"][name] = time_method(method, str(path), args.repeats)
                print(f"{label} {name}: {entry['methods'][name]['seconds']:.2f} s")
            entry["pixels_vs_decord"] = pixels_vs_decord(str(path), args.frame_size, config_args)
            baseline = entry["methods"]["pyav_every_frame"]
            for stats in entry["methods"].values():
                stats["speedup_vs_pyav"] = baseline["seconds"] / stats["seconds"]
                stats["cpu_speedup_vs_pyav"] = baseline["cpu_seconds"] / max(stats["cpu_seconds"], 1e-9)
            results["files"][label] = entry
    finally:
        if temp is not None:
            temp.cleanup()
    print()
    print(markdown_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return results


def markdown_table(results: dict[str, Any]) -> str:
    lines = [
        "| file | method | s / video (wall) | CPU s | frames delivered | frames decoded (est.) "
        "| delivered / s | decoded / s | speed-up vs PyAV (wall) | (CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, entry in results["files"].items():
        name = (f"{label} {entry['width']}x{entry['height']} {entry['duration_s']:.0f} s, "
                f"{entry['frame_count']} frames, {entry['keyframes']} keyframes")
        for method, stats in entry["methods"].items():
            lines.append(
                f"| {name} | {method} | {stats['seconds']:.2f} | {stats['cpu_seconds']:.2f} | "
                f"{stats['frames_delivered']} | {stats['frames_decoded']} | {stats['delivered_per_s']:.0f} | "
                f"{stats['decoded_per_s']:.0f} | {stats['speedup_vs_pyav']:.1f}× | "
                f"{stats['cpu_speedup_vs_pyav']:.1f}× |"
            )
            name = ""
    return "\n".join(lines)


if __name__ == "__main__":
    main()
