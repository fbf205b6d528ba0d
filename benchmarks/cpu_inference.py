"""CPU inference options of the CLIP image encoder, side by side in one run (issue 15, "Close the distance").

The encoder of ``reelhash index`` (``--arch``, default ViT-B-32) with random weights — the same compute as
pretrained, see the caveat below — encodes one batch of real decoded frames (``--videos`` generated sample videos,
``pipeline/sample_collection.py``, decoded and cropped as the pipeline does) with each option:

  fp32 eager                 the baseline: fp32 weights, ``torch.inference_mode``, the default torch threads
  fp32 no_grad               ``torch.no_grad`` instead of ``torch.inference_mode``
  fp32 channels-last         conv1's weight and the input in channels-last (only the patch embedding is a conv)
  fp32 1 thread              ``torch.set_num_threads(1)``
  fp32 oneDNN matmul         ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` (process-global): fp32
                             matmuls through oneDNN (instead of MKL), which may compute them in bf16
  fp16 autocast              what ``precision="fp16"`` does on a CPU
  bf16 autocast              ``torch.autocast("cpu", torch.bfloat16)``: what ``precision="bf16"`` did before
  bf16 autocast, seq-first   the same with the ViT run sequence-first (open_clip's ``batch_first=False`` layout),
                             to show where autocast loses its time (docs/encoders.md)
  bf16 tower                 the image tower's weights cast to bf16 once, as the encoder does now on a CPU
                             (``_cast_image_tower`` in hashing/encoders/open_clip_encoder.py); no autocast
  bf16 tower, 1 thread
  compile fp32 / bf16 tower  ``torch.compile`` (inductor, ``freezing``, static shapes); compile seconds reported, with
                             an empty inductor cache unless TORCHINDUCTOR_CACHE_DIR is set
  onnxruntime fp32           the tower exported with ``torch.onnx.export``; only if onnxruntime, onnx and onnxscript
                             import (they are not dependencies of the project)
  openvino bf16 / fp32       ``openvino.convert_model`` of the tower, inference precision bf16 (its default on a CPU
                             with native bf16; also on 1 thread) and f32; only if openvino imports (not a dependency
                             either)
  encoder fp32 / auto        the whole ``OpenClipEncoder.encode_frames`` (uint8 frames in, normalisation included)
                             with ``precision="fp32"`` and the default ``"auto"``

Every option but the two encoder rows gets the same normalised float32 pixels. Options are timed round-robin
(one call each per round, ``--warmup`` rounds discarded, ``--repeats`` timed), so machine noise hits all alike;
images/s is the median over the timed rounds ("best": the fastest round, the least disturbed on a shared
machine), CPU s/image the median process CPU time per image (all threads).

Cosine: each option's unit-norm embeddings against fp32 eager's, per frame (min and mean). A random tower maps all
frames close to one common direction (fp32's cosine between different frames of the batch is in the JSON), so the
table also gives the *centred* cosine (both sides minus fp32's mean embedding of the batch: how much of what tells
frames apart an option keeps) and the share of frames whose nearest other frame stays the same.

Random weights: the compute is that of the real model, but how far bf16 moves an embedding depends on the weights
(pretrained CLIP towers have large activations on a few channels); ``--clip-pretrained``/``--clip-checkpoint``
re-check the cosines with real weights where they are available.

Writes JSON (every number, the machine and its load averages) and prints a markdown table.

    .venv/bin/python benchmarks/cpu_inference.py                 # about 3 min on an idle 2-core machine
    .venv/bin/python benchmarks/cpu_inference.py --quick         # smoke test: batch 4, 2 rounds, not saved in results/
    .venv/bin/python benchmarks/cpu_inference.py --skip compile,openvino --repeats 9
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "cpu_inference.json"
MIN_COSINE = 0.999  # the bound against fp32
GROUPS = ("fp32", "threads", "autocast", "bf16", "compile", "onnxruntime", "openvino", "encoder")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights unless given)")
    parser.add_argument("--clip-pretrained", default=None, help="an open_clip pretrained tag, from the local cache")
    parser.add_argument("--clip-checkpoint", default=None, help="a local open_clip checkpoint")
    parser.add_argument("--batch", type=int, default=None, help="images per forward pass (default 16; --quick 4)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; --quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--videos", type=int, default=None,
                        help="generated videos the frames come from (default 8; --quick 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (and onnxruntime/openvino) threads for every option (default: torch's default)")
    parser.add_argument("--skip", default="", help=f"comma-separated groups to leave out: {','.join(GROUPS)}")
    parser.add_argument("--quick", action="store_true", help="smoke test: small batch, 2 rounds")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the sample videos go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO_ROOT)}; --quick: in the temp dir)")
    args = parser.parse_args(argv)
    args.batch = args.batch or (4 if args.quick else 16)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.videos = args.videos or (2 if args.quick else 8)
    args.skip = {group.strip() for group in args.skip.split(",") if group.strip()}
    unknown = args.skip - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups in --skip: {sorted(unknown)}; known: {', '.join(GROUPS)}")
    if min(args.batch, args.repeats, args.videos, args.threads or 1) < 1 or args.warmup < 0:
        parser.error("--batch, --repeats and --videos must be at least 1, --warmup at least 0")
    return args


# ----------------------------------------------------------------------------------------------- frames


def decoded_frames(count: int, videos: int, frame_size: int, resize: str, work_dir: Path) -> np.ndarray:
    """``count`` uint8 [S, S, 3] frames decoded from generated sample videos, spread over the videos."""
    from pipeline.sample_collection import existing_sample_collection, make_sample_collection
    from pipeline.sampling import SamplingConfig, decode_clips

    manifest = existing_sample_collection(work_dir, videos) or make_sample_collection(work_dir, videos, seed=15)
    paths = sorted((manifest.parent / "videos").glob("*.mp4"))
    per_video = [np.concatenate([clip for _, clip in decode_clips(path, SamplingConfig(), frame_size, resize=resize)])
                 for path in paths]
    # Round-robin over the videos, so a small batch still shows several of them.
    frames = [video[i] for i in range(max(len(v) for v in per_video)) for video in per_video if i < len(video)]
    while len(frames) < count:
        frames += frames
    return np.stack(frames[:count])


# ----------------------------------------------------------------------------------------------- options


@dataclass
class Option:
    name: str
    group: str
    run: Callable[[], Any]  # one forward pass of the batch -> [B, D] embeddings (torch or numpy)
    threads: int | None = None  # torch threads for the call (None: the process default)
    setup_s: float = 0.0  # export, conversion or compilation, including the first call where it compiles
    note: str = ""
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    error: str | None = None


def unit(embeddings: Any) -> np.ndarray:
    import torch

    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().float().cpu().numpy()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seq_first(visual):
    """A copy of an open_clip VisionTransformer that runs its blocks sequence-first (same maths, other layout)."""
    visual = copy.deepcopy(visual)
    visual.transformer.batch_first = False
    for block in visual.transformer.resblocks:
        block.attn.batch_first = False
    return visual


def build_options(args: argparse.Namespace, fp32_encoder, pixels, frames: np.ndarray,
                  config_kwargs: dict) -> list[Option]:
    import torch

    from hashing.encoders.open_clip_encoder import _cast_image_tower, build_encoder
    from hashing.encoders.weights import OpenClipEncoderConfig

    model = fp32_encoder._model  # the encoder's own fp32 model
    visual = model.visual
    threads = torch.get_num_threads()
    skip = args.skip
    options: list[Option] = []

    def inference(function: Callable[[], Any]) -> Callable[[], Any]:
        def call():
            with torch.inference_mode():
                return function()
        return call

    def add(name: str, group: str, run: Callable[[], Any], **kwargs: Any) -> None:
        if group not in skip:
            options.append(Option(name, group, run, **kwargs))

    # The baseline is never skipped: every ratio and cosine is against it.
    options.append(Option("fp32 eager (baseline)", "baseline", inference(lambda: visual(pixels))))

    def no_grad():
        with torch.no_grad():
            return visual(pixels)
    add("fp32 no_grad", "fp32", no_grad)

    if "fp32" not in skip:
        channels_last = copy.deepcopy(visual)
        channels_last.conv1.to(memory_format=torch.channels_last)
        pixels_cl = pixels.contiguous(memory_format=torch.channels_last)
        add("fp32 channels-last", "fp32", inference(lambda: channels_last(pixels_cl)))

    if threads > 1:
        add("fp32 1 thread", "threads", inference(lambda: visual(pixels)), threads=1)

    def onednn_matmul():
        backend = torch.backends.mkldnn.matmul
        before = backend.fp32_precision
        backend.fp32_precision = "bf16"
        try:
            with torch.inference_mode():
                return visual(pixels)
        finally:
            backend.fp32_precision = before
    add("fp32 oneDNN matmul (global flag)", "fp32", onednn_matmul)

    def autocast(dtype, module=visual):
        def call():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
                return module(pixels)
        return call
    add("fp16 autocast", "autocast", autocast(torch.float16))
    add("bf16 autocast", "autocast", autocast(torch.bfloat16))
    if "autocast" not in skip:
        add("bf16 autocast, seq-first", "autocast", autocast(torch.bfloat16, seq_first(visual)))

    bf16_tower = None
    if not {"bf16", "compile"} <= skip:
        bf16_model = copy.deepcopy(model)
        if _cast_image_tower(bf16_model, torch.bfloat16):
            bf16_tower = bf16_model.visual
        pixels_bf16 = pixels.to(torch.bfloat16)
    if bf16_tower is not None:
        add("bf16 tower", "bf16", inference(lambda: bf16_tower(pixels_bf16)))
        if threads > 1:
            add("bf16 tower, 1 thread", "threads", inference(lambda: bf16_tower(pixels_bf16)), threads=1)

    if "compile" not in skip:
        for name, module, inputs in (("compile fp32", visual, pixels), ("compile bf16 tower", bf16_tower, None)):
            if module is None:
                continue
            inputs = pixels_bf16 if inputs is None else inputs
            compiled = torch.compile(module, dynamic=False, options={"freezing": True})
            options.append(compile_option(name, compiled, inputs))

    if "onnxruntime" not in skip:
        options.append(onnxruntime_option(visual, pixels, threads))
    if "openvino" not in skip:
        options.extend(openvino_options(visual, pixels, threads))

    if "encoder" not in skip:
        auto = build_encoder(OpenClipEncoderConfig(**config_kwargs, precision="auto", batch_size=len(frames)))
        for precision, encoder in (("fp32", fp32_encoder), ("auto", auto)):
            add(f"encoder precision={precision!r}", "encoder",
                lambda encoder=encoder: encoder.encode_frames(frames),
                note=f"image tower {'bf16' if encoder._image_dtype is not None else 'fp32'}")
    return options


def compile_option(name: str, compiled, inputs) -> Option:
    import torch

    started = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled(inputs)  # compiles
    except Exception as error:  # noqa: BLE001  (no compiler, an unsupported op: reported, not fatal)
        return Option(name, "compile", lambda: None, error=f"{type(error).__name__}: {error}"[:300])
    setup = time.perf_counter() - started

    def call():
        with torch.inference_mode():
            return compiled(inputs)
    return Option(name, "compile", call, setup_s=setup, note="inductor, freezing, static shapes")


def onnxruntime_option(visual, pixels, threads: int) -> Option:
    name = "onnxruntime fp32"
    try:
        import onnxruntime
        import torch
    except ImportError as error:
        return Option(name, "onnxruntime", lambda: None, error=f"not installed ({error})")
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "visual.onnx"
            with contextlib.redirect_stdout(sys.stderr):
                torch.onnx.export(visual, (pixels,), str(path), dynamo=True, external_data=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
            session_options = onnxruntime.SessionOptions()
            session_options.intra_op_num_threads = threads
            session = onnxruntime.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001
        return Option(name, "onnxruntime", lambda: None, error=f"{type(error).__name__}: {error}"[:300])
    input_name = session.get_inputs()[0].name
    array = pixels.numpy()
    return Option(name, "onnxruntime", lambda: session.run(None, {input_name: array})[0],
                  setup_s=time.perf_counter() - started,
                  note=f"onnxruntime {onnxruntime.__version__}, export + session")


def openvino_options(visual, pixels, threads: int) -> list[Option]:
    try:
        import openvino
        import torch
    except ImportError as error:
        return [Option("openvino", "openvino", lambda: None, error=f"not installed ({error})")]
    started = time.perf_counter()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
            converted = openvino.convert_model(visual, example_input=pixels)
    except Exception as error:  # noqa: BLE001
        return [Option("openvino", "openvino", lambda: None, error=f"{type(error).__name__}: {error}"[:300])]
    convert_s = time.perf_counter() - started
    core = openvino.Core()
    array = pixels.numpy()
    options = []
    variants = [("bf16", "bf16", threads), ("fp32", "f32", threads)]
    if threads > 1:
        variants.insert(1, ("bf16, 1 thread", "bf16", 1))
    for label, hint, variant_threads in variants:
        name = f"openvino {label}"
        started = time.perf_counter()
        try:
            compiled = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                              "INFERENCE_NUM_THREADS": variant_threads})
            request = compiled.create_infer_request()
        except Exception as error:  # noqa: BLE001  (e.g. no bf16 on this CPU)
            options.append(Option(name, "openvino", lambda: None, error=f"{type(error).__name__}: {error}"[:300]))
            continue
        used = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        options.append(Option(name, "openvino", lambda request=request: request.infer({0: array})[0].copy(),
                              setup_s=convert_s + time.perf_counter() - started,
                              note=f"openvino {openvino.__version__}, inference precision {used}"))
    return options


# ----------------------------------------------------------------------------------------------- timing


def time_round_robin(options: list[Option], warmup: int, repeats: int, log: Callable[[str], None]) -> None:
    runnable = [option for option in options if option.error is None]
    for round_index in range(warmup + repeats):
        timed = round_index >= warmup
        for option in runnable:
            if option.error is not None:
                continue
            with torch_threads(option.threads):
                gc.collect()
                wall, cpu = time.perf_counter(), time.process_time()
                try:
                    out = option.run()
                except Exception as error:  # noqa: BLE001  (reported in its row)
                    option.error = f"{type(error).__name__}: {error}"[:300]
                    continue
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if timed:
                option.wall_s.append(wall)
                option.cpu_s.append(cpu)
            option.embeddings = unit(out)
        log(f"round {round_index + 1}/{warmup + repeats} {'timed' if timed else 'warm-up'} done, "
            f"load average {os.getloadavg()[0]:.2f}")


def centred_cosine(embeddings: np.ndarray, reference: np.ndarray, common: np.ndarray) -> np.ndarray:
    a, b = embeddings - common, reference - common
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def nearest_other(embeddings: np.ndarray) -> np.ndarray:
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def summarise(options: list[Option], batch: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    baseline = options[0]
    reference = baseline.embeddings
    base_rate = batch / statistics.median(baseline.wall_s) if baseline.wall_s else None
    reference_nearest = nearest_other(reference) if reference is not None and len(reference) > 1 else None
    # Random towers map every frame close to one common direction; without it, what is left is what tells frames
    # apart, and the centred cosine says how much of that an option keeps.
    common = reference.mean(axis=0) if reference is not None and len(reference) > 1 else None
    rows = []
    for option in options:
        row: dict[str, Any] = {"option": option.name, "group": option.group, "threads": option.threads,
                               "note": option.note, "error": option.error}
        if option.error is None and option.wall_s:
            rate = batch / statistics.median(option.wall_s)
            cosine = np.sum(option.embeddings * reference, axis=1)
            best = batch / min(option.wall_s)
            row.update({
                "images_per_s": rate, "images_per_s_best": best,
                "vs_fp32_best": best * min(baseline.wall_s) / batch if baseline.wall_s else None,
                "vs_fp32": rate / base_rate if base_rate else None,
                "cpu_s_per_image": statistics.median(option.cpu_s) / batch,
                "wall_s": option.wall_s, "cpu_s": option.cpu_s,
                "setup_s": option.setup_s or None,
                "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
                "min_centred_cosine": (float(np.min(centred_cosine(option.embeddings, reference, common)))
                                       if common is not None else None),
                "same_nearest_frame": (float(np.mean(nearest_other(option.embeddings) == reference_nearest))
                                       if reference_nearest is not None else None),
            })
            row["within_bound"] = row["min_cosine"] >= MIN_COSINE
        rows.append(row)
    spread: dict[str, Any] = {}
    if reference is not None and len(reference) > 1:
        pairs = (reference @ reference.T)[~np.eye(len(reference), dtype=bool)]
        spread = {"median": float(np.median(pairs)), "max": float(pairs.max()), "min": float(pairs.min())}
    return rows, spread


def pick(rows: list[dict[str, Any]], key: str = "images_per_s") -> dict[str, Any] | None:
    """The fastest option within the cosine bound (the encoder rows are the encoder's own path, not options)."""
    eligible = [row for row in rows if row.get("within_bound") and row["group"] != "encoder"]
    return max(eligible, key=lambda row: row[key], default=None)


# ----------------------------------------------------------------------------------------------- report


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    headers = ["option", "images/s", "vs fp32", "best images/s", "best vs fp32", "CPU s/image", "setup s", "min cos",
               "mean cos", "min centred cos", "same nearest frame"]
    lines = ["| " + " | ".join(headers) + " |", "|---" + "|---:" * (len(headers) - 1) + "|"]
    for row in results["options"]:
        if row.get("error"):
            lines.append(f"| {row['option']} |" + " – |" * (len(headers) - 2) + f" – ({row['error'][:80]}) |")
            continue
        lines.append(
            f"| {row['option']} | {num(row['images_per_s'], 1)} | {num(row['vs_fp32'])} | "
            f"{num(row['images_per_s_best'], 1)} | {num(row['vs_fp32_best'])} | "
            f"{num(row['cpu_s_per_image'], 3)} | {num(row['setup_s'], 1)} | {row['min_cosine']:.6f} | "
            f"{row['mean_cosine']:.6f} | {num(row['min_centred_cosine'], 4)} | {num(row['same_nearest_frame'])} |")
    machine = results["machine"]
    lines += ["", f"{results['arch']} ({results['weights']}), batch {results['batch']}, {results['repeats']} timed "
              f"rounds after {results['warmup']} warm-up, {machine['torch_threads']} torch threads; "
              f"{machine['cpu_model']}, native bf16: {machine['native_bf16']}; load average "
              f"{machine['load_average_at_start'][0]:.2f} at start, {machine['load_average_at_end'][0]:.2f} at end."]
    spread = results.get("fp32_cosine_between_frames") or {}
    if spread:
        lines.append(f"fp32 cosine between different frames of the batch: median {spread['median']:.4f}, "
                     f"max {spread['max']:.4f}.")
    picks = (("median", "images_per_s", "vs_fp32"), ("best round", "images_per_s_best", "vs_fp32_best"))
    for label, key, ratio in picks:
        best = pick(results["options"], key)
        if best:
            lines.append(f"Fastest with min cosine >= {MIN_COSINE} by its {label}: {best['option']} "
                         f"({best[key]:.1f} images/s, {best[ratio]:.2f}x fp32).")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")) -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in wanted if flag in flags]


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    import open_clip
    import torch

    from hashing.encoders.open_clip_encoder import cpu_has_native_bf16

    return {
        "platform": platform.platform(), "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
        "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
        "torch_threads": torch.get_num_threads(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "onnxruntime": version("onnxruntime"), "openvino": version("openvino"),
        "load_average_at_start": os.getloadavg(),
    }


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reelhash-cpu-")))
        if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            # A cold compile every run, as a fresh encoder process would pay it (inductor otherwise reuses its cache).
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="inductor-"))
        return benchmark(args, work, log)


def benchmark(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> int:
    started = time.perf_counter()
    machine = machine_info()
    log(f"{machine['cpu_model']}, native bf16 {machine['native_bf16']}, {machine['torch_threads']} torch threads, "
        f"load average {machine['load_average_at_start']}")

    import torch

    from hashing.encoders.open_clip_encoder import build_encoder
    from hashing.encoders.weights import OpenClipEncoderConfig

    if args.threads:
        torch.set_num_threads(args.threads)
        machine["torch_threads"] = args.threads
    weights: dict[str, Any] = {"allow_random_weights": True}
    if args.clip_pretrained or args.clip_checkpoint:
        weights = {"pretrained": args.clip_pretrained, "checkpoint_path": args.clip_checkpoint}
    config_kwargs = {"arch": args.arch, "device": "cpu", **weights}
    fp32 = build_encoder(OpenClipEncoderConfig(**config_kwargs, precision="fp32", batch_size=args.batch))
    spec = fp32.frame_spec
    log(f"decoding {args.batch} frames of {args.videos} generated videos in {work}")
    frames = decoded_frames(args.batch, args.videos, spec.size, spec.resize, work)
    with torch.no_grad():  # plain tensors: torch.export and tracing refuse inference-mode ones
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)
        pixels = ((pixels - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1))
        pixels = pixels.contiguous()
    log("preparing the options (exports and compilation included)")
    options = build_options(args, fp32, pixels, frames, config_kwargs)
    for option in options:
        log(f"  {option.name}: " + (f"unavailable: {option.error}" if option.error else
                                    f"ready{f' after {option.setup_s:.1f} s' if option.setup_s else ''}"))
    time_round_robin(options, args.warmup, args.repeats, log)
    rows, spread = summarise(options, args.batch)
    machine["load_average_at_end"] = os.getloadavg()
    results = {
        "benchmark": "cpu_inference", "date": time.strftime("%Y-%m-%d %H:%M"), "arch": args.arch,
        "weights": ("random" if "allow_random_weights" in weights
                    else args.clip_checkpoint or f"pretrained {args.clip_pretrained}"),
        "batch": args.batch, "repeats": args.repeats, "warmup": args.warmup, "videos": args.videos,
        "quick": args.quick, "min_cosine_bound": MIN_COSINE, "machine": machine, "options": rows,
        "fp32_cosine_between_frames": spread, "fastest_within_bound": pick(rows),
        "fastest_within_bound_best_round": pick(rows, "images_per_s_best"),
        "wall_s": time.perf_counter() - started,
    }
    # A smoke test never replaces the committed results.
    out = args.out or (Path(tempfile.gettempdir()) / "reelhash-cpu_inference-quick.json" if args.quick
                       else DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    log(f"wrote {out} after {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
