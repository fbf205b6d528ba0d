"""A small synthetic video collection with captions and labels, for demos, tests and benchmarks.

Each video is a real H.264 mp4 (PyAV/libx264) showing one or two coloured shapes that move over a
textured background. The manifest (``manifest.parquet``: ``uri``, ``caption``, ``labels``, ``split``,
…) is what ``pipeline.catalog`` reads. The collection is built so that retrieval can be checked:

- captions come from several templates with synonyms ("a crimson square slides to the left",
  "red box moving leftwards"), so text search cannot rely on one fixed wording;
- some shape × colour × motion combinations appear only in the test split (generalisation);
- some pairs of videos differ only in motion direction — the same frames played forwards and
  backwards (left/right, up/down) — which frame averaging alone cannot tell apart.

Everything derives from ``seed``: same seed, same manifest and same pictures (x264 is deterministic,
so in practice the same bytes).
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.store import atomic_write_bytes, atomic_write_parquet

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 185, 50),
    "blue": (40, 80, 235),
    "yellow": (245, 220, 30),
    "magenta": (205, 40, 205),
    "orange": (250, 140, 20),
    "cyan": (30, 210, 225),
    "white": (245, 245, 245),
}
MOTIONS = ("left", "right", "up", "down", "grow", "shrink", "rotate", "still")
# All label strings in a fixed order: the column order of multi-hot label vectors.
LABEL_VOCABULARY: tuple[str, ...] = (
    tuple(f"shape:{s}" for s in SHAPES)
    + tuple(f"colour:{c}" for c in COLOURS)
    + tuple(f"motion:{m}" for m in MOTIONS)
)
MANIFEST_NAME = "manifest.parquet"

# (width, height, pix_fmt). Several sizes are not multiples of 16 (partial macroblocks); 201×141 is odd,
# which 4:2:0 cannot represent, so it is stored as 4:4:4 (x264 High 4:4:4, decodable by decord).
RESOLUTIONS = (
    (160, 120, "yuv420p"),
    (192, 108, "yuv420p"),
    (202, 142, "yuv420p"),
    (240, 136, "yuv420p"),
    (320, 180, "yuv420p"),
    (201, 141, "yuv444p"),
)
FRAME_RATES = (Fraction(15), Fraction(20), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30))
DURATION_RANGE_S = (2.0, 12.0)
BACKGROUNDS = ("noise", "checker", "stripes", "gradient", "blotches")
# Keyframe interval in seconds (None: x264's default of 250 frames) — varied so keyframe sampling sees
# dense and sparse keyframes.
KEYFRAME_INTERVALS_S = (1.0, 2.0, None)

SHAPE_WORDS = {
    "circle": ("circle", "disc", "ball", "round dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "three-sided shape", "wedge"),
    "star": ("star", "five-pointed star"),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus", "lozenge"),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime-green"),
    "blue": ("blue", "azure", "cobalt"),
    "yellow": ("yellow", "golden", "lemon"),
    "magenta": ("magenta", "purple", "fuchsia"),
    "orange": ("orange", "amber", "tangerine"),
    "cyan": ("cyan", "turquoise", "aqua"),
    "white": ("white", "snow-white", "ivory"),
}
# (third person, participle) phrases per motion.
MOTION_WORDS = {
    "left": (("slides to the left", "sliding to the left"), ("moves leftwards", "moving leftwards"),
             ("drifts left", "drifting left"), ("travels from right to left", "travelling from right to left")),
    "right": (("slides to the right", "sliding to the right"), ("moves rightwards", "moving rightwards"),
              ("drifts right", "drifting right"), ("travels from left to right", "travelling from left to right")),
    "up": (("rises", "rising"), ("moves upwards", "moving upwards"), ("floats up", "floating up"),
           ("travels from bottom to top", "travelling from bottom to top")),
    "down": (("falls", "falling"), ("moves downwards", "moving downwards"), ("sinks", "sinking"),
             ("travels from top to bottom", "travelling from top to bottom")),
    "grow": (("grows", "growing"), ("gets bigger", "getting bigger"), ("expands", "expanding"),
             ("swells", "swelling")),
    "shrink": (("shrinks", "shrinking"), ("gets smaller", "getting smaller"), ("contracts", "contracting"),
               ("dwindles", "dwindling")),
    "rotate": (("spins", "spinning"), ("rotates", "rotating"), ("turns around", "turning around"),
               ("twirls", "twirling")),
    "still": (("stays still", "staying still"), ("does not move", "not moving"),
              ("sits motionless", "sitting motionless"), ("rests in place", "resting in place")),
}
_BACKGROUND_WORDS = {
    "noise": ("on a noisy background", "over grainy noise"),
    "checker": ("over a checkerboard", "on a chequered background"),
    "stripes": ("against a striped background", "over stripes"),
    "gradient": ("on a gradient background", "over a smooth gradient"),
    "blotches": ("over a blotchy texture", "on a mottled background"),
}
_MIRRORED = {"left": "right", "right": "left", "up": "down", "down": "up"}


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str
    motion: str
    size: float  # radius as a fraction of the frame's short side
    speed: float  # fraction of the possible travel (or growth, or turns per second for rotate)
    anchor: tuple[float, float]  # start position, as fractions of the free area (0..1, 0..1)
    angle: float  # initial orientation, radians
    reverse: bool = False  # play the trajectory backwards: turns left into right, up into down


@dataclass(frozen=True)
class VideoSpec:
    name: str
    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    n_frames: int
    keyframe_interval: int | None
    background: str
    background_seed: int
    objects: tuple[ObjectSpec, ...]
    split: str
    pair_id: str | None = None


# uri: relative to the manifest's directory. captions: three paraphrases, caption is the first.
# labels: LABEL_VOCABULARY strings, union over the objects. shape/colour/motion: the main object.
# pair_id: shared by the two videos of a direction pair, else null.
MANIFEST_SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("caption", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.string())),
        ("split", pa.string()),
        ("shape", pa.string()),
        ("colour", pa.string()),
        ("motion", pa.string()),
        ("n_objects", pa.int32()),
        ("pair_id", pa.string()),
        ("background", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("fps", pa.float64()),
        ("frame_count", pa.int32()),
        ("duration_s", pa.float64()),
    ]
)


def make_sample_collection(directory: str | Path, n_videos: int, seed: int, progress: bool = False,
                           workers: int | None = None) -> Path:
    """Write ``n_videos`` mp4 files under ``directory/videos/`` and return ``directory/manifest.parquet``.

    Videos are written first (each atomically), the manifest last, so a manifest never points at a
    missing or half-written file. ``workers`` processes render and encode in parallel (default: one
    per CPU, at most 4, for 16 videos or more); the result does not depend on it.
    """
    if n_videos < 1:
        raise ValueError(f"n_videos must be at least 1, got {n_videos}")
    directory = Path(directory)
    (directory / "videos").mkdir(parents=True, exist_ok=True)
    specs = plan_collection(n_videos, seed)
    uris = [f"videos/{spec.name}.mp4" for spec in specs]
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if n_videos >= 16 else 1
    jobs = [(spec, directory / uri) for spec, uri in zip(specs, uris)]
    # A context manager, so an interrupted run closes its bar before the caller reports the interruption
    # (otherwise tqdm redraws it when the object is collected, after the caller's last line).
    with tqdm(total=len(jobs), desc="sample videos", unit="video", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                _write_video(job)
                bar.update()
        else:
            # spawn, not fork: the caller may already run Ray or torch threads, which do not survive a fork.
            # After the last video the workers are closed and exit by themselves (terminating them then could signal
            # one in its own exit). On Ctrl-C or a failed video, leaving the block terminates them: the videos being
            # written unwind and remove their temporary files (``unwind_on_terminate``), instead of the interpreter's
            # exit waiting for every queued video.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=unwind_on_terminate) as pool:
                for _ in pool.imap_unordered(_write_video, jobs):
                    bar.update()
                pool.close()
                pool.join()
    rows = [_manifest_row(spec, uri, seed) for spec, uri in zip(specs, uris)]
    manifest = directory / MANIFEST_NAME
    atomic_write_parquet(manifest, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
    return manifest


def existing_sample_collection(directory: str | Path, n_videos: int) -> Path | None:
    """The manifest of a collection of ``n_videos`` already in ``directory``, or None. The manifest is written
    last, so one with the right number of rows names only complete videos."""
    manifest = Path(directory) / MANIFEST_NAME
    if manifest.exists() and pq.read_metadata(manifest).num_rows == n_videos:
        return manifest
    return None


def unwind_on_terminate() -> None:
    """Set up a worker process: Ctrl-C is its parent's to handle (a terminal sends it to the whole process group),
    and the parent's terminate (SIGTERM) raises ``SystemExit``, so ``finally`` blocks remove half-written files."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _write_video(job: tuple[VideoSpec, Path]) -> None:
    spec, path = job
    atomic_write_bytes(path, encode_mp4(render_frames(spec), spec))


# ---------------------------------------------------------------------------- planning


def plan_collection(n_videos: int, seed: int) -> list[VideoSpec]:
    """The deterministic content plan: which video shows what, and in which split."""
    rng = np.random.default_rng(seed)
    all_combos = [(s, c, m) for s in SHAPES for c in COLOURS for m in MOTIONS if not _invisible(s, m)]
    n_pairs = max(1, n_videos // 8) if n_videos >= 2 else 0
    # Held-out combinations grow with the collection, but at most half of them: beyond ~1,500 videos the rest
    # would run out of directional combinations for the mirrored pairs.
    n_held_out = min(max(1, n_videos // 8), len(all_combos) // 2) if n_videos >= 2 * n_pairs + 1 else 0
    order = rng.permutation(len(all_combos))
    held_out = [all_combos[i] for i in order[:n_held_out]]
    allowed = [all_combos[i] for i in order[n_held_out:]]
    allowed_directional = [combo for combo in allowed if combo[2] in ("left", "up")
                           and (combo[0], combo[1], _MIRRORED[combo[2]]) not in held_out]

    entries: list[tuple[list[ObjectSpec], str, str | None]] = []  # (objects, split, pair_id)
    for pair in range(n_pairs):
        shape, colour, motion = allowed_directional[int(rng.integers(len(allowed_directional)))]
        forward = _random_object(rng, shape, colour, motion)
        backward = replace(forward, motion=_MIRRORED[motion], reverse=True)
        split = "test" if pair % 2 == 0 else "train"
        entries.append(([forward], split, f"pair-{pair:02d}"))
        entries.append(([backward], split, f"pair-{pair:02d}"))
    for shape, colour, motion in held_out:
        entries.append(([_random_object(rng, shape, colour, motion)], "test", None))
    n_rest = n_videos - len(entries)
    n_rest_test = round(0.2 * n_rest)
    for i in range(n_rest):
        split = "test" if i < n_rest_test else "train"
        main = allowed[int(rng.integers(len(allowed)))]
        objects = [_random_object(rng, *main)]
        if rng.random() < 0.3:
            second = _second_combo(rng, main, allowed)
            objects.append(_random_object(rng, *second, small=True))
        entries.append((objects, split, None))

    width = max(3, len(str(n_videos - 1)))
    video_order = rng.permutation(len(entries))
    specs = []
    pair_layouts: dict[str, VideoSpec] = {}
    for position, entry_index in enumerate(video_order):
        objects, split, pair_id = entries[entry_index]
        layout = _random_layout(rng, name=f"video_{position:0{width}d}", objects=tuple(objects), split=split,
                                pair_id=pair_id)
        if pair_id is not None:
            # Both videos of a pair share size, frame rate, length and background: only direction differs.
            first = pair_layouts.setdefault(pair_id, layout)
            layout = replace(first, name=layout.name, objects=tuple(objects))
        specs.append(layout)
    return specs


def _invisible(shape: str, motion: str) -> bool:
    return shape == "circle" and motion == "rotate"  # a rotating disc looks exactly like a still one


def _second_combo(rng: np.random.Generator, main: tuple[str, str, str],
                  allowed: list[tuple[str, str, str]]) -> tuple[str, str, str]:
    """A second object that differs from the main one in shape and colour (so captions stay unambiguous)."""
    candidates = [combo for combo in allowed if combo[0] != main[0] and combo[1] != main[1]]
    return candidates[int(rng.integers(len(candidates)))]


def _random_object(rng: np.random.Generator, shape: str, colour: str, motion: str,
                   small: bool = False) -> ObjectSpec:
    size = float(rng.uniform(0.09, 0.13) if small else rng.uniform(0.12, 0.22))
    return ObjectSpec(
        shape=shape,
        colour=colour,
        motion=motion,
        size=size,
        speed=float(rng.uniform(0.4, 1.0)),
        anchor=(float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0))),
        angle=float(rng.uniform(0.0, 2 * math.pi)),
    )


def _random_layout(rng: np.random.Generator, name: str, objects: tuple[ObjectSpec, ...], split: str,
                   pair_id: str | None) -> VideoSpec:
    width, height, pix_fmt = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    fps = FRAME_RATES[int(rng.integers(len(FRAME_RATES)))]
    duration = float(rng.uniform(*DURATION_RANGE_S))
    interval_s = KEYFRAME_INTERVALS_S[int(rng.integers(len(KEYFRAME_INTERVALS_S)))]
    return VideoSpec(
        name=name,
        width=width,
        height=height,
        pix_fmt=pix_fmt,
        fps=fps,
        n_frames=max(2, round(duration * fps)),
        keyframe_interval=None if interval_s is None else max(1, round(interval_s * fps)),
        background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        background_seed=int(rng.integers(2**31)),
        objects=objects,
        split=split,
        pair_id=pair_id,
    )


# ---------------------------------------------------------------------------- captions and labels


def labels_of(objects: tuple[ObjectSpec, ...]) -> list[str]:
    """Multi-hot labels as strings, in ``LABEL_VOCABULARY`` order (union over objects)."""
    present = set()
    for obj in objects:
        present.update({f"shape:{obj.shape}", f"colour:{obj.colour}", f"motion:{obj.motion}"})
    return [label for label in LABEL_VOCABULARY if label in present]


def captions_of(spec: VideoSpec, rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` different paraphrases describing every object of the video."""
    templates = list(range(len(_SINGLE_TEMPLATES)))
    chosen = rng.permutation(templates)[:n]
    return [_caption(spec, int(t), rng) for t in chosen]


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _words(obj: ObjectSpec, rng: np.random.Generator) -> dict[str, str]:
    verb, participle = MOTION_WORDS[obj.motion][int(rng.integers(len(MOTION_WORDS[obj.motion])))]
    return {
        "adj": _pick(rng, COLOUR_WORDS[obj.colour]),
        "noun": _pick(rng, SHAPE_WORDS[obj.shape]),
        "verb": verb,
        "ing": participle,
    }


_SINGLE_TEMPLATES = (
    "{a_adj} {noun} {verb}",
    "{adj} {noun} {ing}",
    "a video of {a_adj} {noun} {ing} {background}",
    "{a_adj} {noun} that {verb} {background}",
    "the {noun} is {adj} and {verb}",
    "{a_noun} in {adj} {ing}",
)
# Two objects get their own sentence shapes ("a video of … and …", not two sentences glued together).
_PAIR_TEMPLATES = (
    "{a_adj} {noun} {verb} while {a_adj2} {noun2} {verb2}",
    "{adj} {noun} {ing} and {adj2} {noun2} {ing2}",
    "a video of {a_adj} {noun} {ing} and {a_adj2} {noun2} {ing2} {background}",
    "two shapes {background}: {a_adj} {noun} that {verb} and {a_adj2} {noun2} that {verb2}",
    "the {noun} is {adj} and {verb}; the {noun2} is {adj2} and {verb2}",
    "{a_noun} in {adj} {ing} next to {a_noun2} in {adj2} {ing2}",
)


def _caption(spec: VideoSpec, template: int, rng: np.random.Generator) -> str:
    fields = {"background": _pick(rng, _BACKGROUND_WORDS[spec.background])}
    for slot, obj in enumerate(spec.objects):
        suffix = "" if slot == 0 else str(slot + 1)
        words = _words(obj, rng)
        words.update(a_adj=_with_article(words["adj"]), a_noun=_with_article(words["noun"]))
        fields.update({key + suffix: value for key, value in words.items()})
    templates = _SINGLE_TEMPLATES if len(spec.objects) == 1 else _PAIR_TEMPLATES
    return templates[template].format(**fields)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _manifest_row(spec: VideoSpec, uri: str, seed: int) -> dict:
    # Caption randomness has its own stream per video, so it does not depend on rendering.
    rng = np.random.default_rng([seed, spec.background_seed, int(spec.name.rsplit("_", 1)[1])])
    captions = captions_of(spec, rng)
    main = spec.objects[0]
    return {
        "uri": uri,
        "caption": captions[0],
        "captions": captions,
        "labels": labels_of(spec.objects),
        "split": spec.split,
        "shape": main.shape,
        "colour": main.colour,
        "motion": main.motion,
        "n_objects": len(spec.objects),
        "pair_id": spec.pair_id,
        "background": spec.background,
        "width": spec.width,
        "height": spec.height,
        "fps": float(spec.fps),
        "frame_count": spec.n_frames,
        "duration_s": spec.n_frames / float(spec.fps),
    }


# ---------------------------------------------------------------------------- rendering


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """uint8 [H, W, 3] RGB frames of one video."""
    rng = np.random.default_rng(spec.background_seed)
    background = _background(spec.background, spec.width, spec.height, rng)
    grain = spec.background == "noise"
    for index in range(spec.n_frames):
        progress = index / (spec.n_frames - 1)
        frame = background.copy()
        if grain:  # a little temporal noise, like sensor grain; seeded per frame, same in both of a pair
            frame_rng = np.random.default_rng([spec.background_seed, index])
            noise = frame_rng.integers(-6, 7, size=frame.shape[:2], dtype=np.int16)[..., None]
            frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        for slot, obj in enumerate(spec.objects):
            _draw_object(frame, obj, slot, len(spec.objects), progress, spec.n_frames / float(spec.fps))
        yield frame


def _background(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    # Muted, mid-dark tones so every object colour (white included) stands out.
    base = rng.uniform(45, 110) + rng.uniform(-15, 15, size=3)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "noise":
        texture = rng.normal(0, 18, size=(height, width, 1))
    elif kind == "checker":
        cell = int(rng.integers(6, 20))
        texture = (((xs // cell + ys // cell) % 2) * 2 - 1)[..., None] * rng.uniform(10, 25)
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(8, 24)
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period
        texture = np.sin(phase)[..., None] * rng.uniform(10, 25)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (xs / width - 0.5) * math.cos(angle) + (ys / height - 0.5) * math.sin(angle)
        texture = ramp[..., None] * rng.uniform(40, 70) + rng.normal(0, 3, size=(height, width, 1))
    elif kind == "blotches":
        coarse = rng.normal(0, 22, size=(height // 12 + 2, width // 12 + 2))
        texture = _upsample(coarse, width, height)[..., None]
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def _upsample(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a small grid to (height, width)."""
    gy = np.linspace(0, grid.shape[0] - 1, height)
    gx = np.linspace(0, grid.shape[1] - 1, width)
    y0, x0 = np.floor(gy).astype(int), np.floor(gx).astype(int)
    y1, x1 = np.minimum(y0 + 1, grid.shape[0] - 1), np.minimum(x0 + 1, grid.shape[1] - 1)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _object_state(obj: ObjectSpec, slot: int, n_slots: int, progress: float, width: int, height: int,
                  duration_s: float) -> tuple[float, float, float, float]:
    """(centre x, centre y, radius, angle) of an object at ``progress`` ∈ [0, 1]."""
    p = 1.0 - progress if obj.reverse else progress
    short = min(width, height)
    radius = obj.size * short
    scale = 1.0
    motion = _MIRRORED[obj.motion] if obj.reverse else obj.motion  # the forward trajectory being replayed
    if motion in ("grow", "shrink"):
        low, high = 0.5, 0.5 + 0.8 * obj.speed
        scale = low + (high - low) * (p if motion == "grow" else 1.0 - p)
    margin = radius * max(scale, 1.0) * 1.3
    # With two objects, each keeps to its own horizontal band so they rarely overlap.
    band_top = height * slot / n_slots
    band = height / n_slots
    x_free = (margin, width - margin)
    y_free = (band_top + min(margin, band / 2), band_top + band - min(margin, band / 2))
    cx = x_free[0] + obj.anchor[0] * (x_free[1] - x_free[0])
    cy = y_free[0] + obj.anchor[1] * (y_free[1] - y_free[0])
    if motion in ("left", "right"):
        travel = obj.speed * (x_free[1] - x_free[0])
        start = x_free[1] - obj.anchor[0] * ((x_free[1] - x_free[0]) - travel)
        cx = start - travel * p if motion == "left" else width - start + travel * p
    elif motion in ("up", "down"):
        y_span = (margin, height - margin)
        travel = obj.speed * (y_span[1] - y_span[0])
        start = y_span[1] - obj.anchor[1] * ((y_span[1] - y_span[0]) - travel)
        cy = start - travel * p if motion == "up" else height - start + travel * p
    angle = obj.angle
    if motion == "rotate":
        turns_per_second = 0.2 + 0.4 * obj.speed
        angle += 2 * math.pi * turns_per_second * duration_s * p
    return cx, cy, radius * scale, angle


def _draw_object(frame: np.ndarray, obj: ObjectSpec, slot: int, n_slots: int, progress: float,
                 duration_s: float) -> None:
    """Paint one anti-aliased shape with a dark rim (readable on any texture) into ``frame`` in place."""
    height, width = frame.shape[:2]
    cx, cy, radius, angle = _object_state(obj, slot, n_slots, progress, width, height, duration_s)
    rim = 0.15 * radius + 1.0
    reach = radius * 1.25 + rim + 2
    x0, x1 = max(0, int(cx - reach)), min(width, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(height, int(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    # Column and row vectors: the distance maths broadcasts to the box without building full grids.
    dx = (np.arange(x0, x1, dtype=np.float32) + np.float32(0.5 - cx))[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + np.float32(0.5 - cy))[:, None]
    distance = _signed_distance(obj.shape, dx, dy, radius, angle)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    for offset, colour in ((rim, (20, 20, 20)), (0.0, COLOURS[obj.colour])):
        # A one-pixel ramp across the edge is the anti-aliasing.
        alpha = np.clip(np.float32(0.5 + offset) - distance, 0.0, 1.0)[..., None]
        region += (np.asarray(colour, np.float32) - region) * alpha
    frame[y0:y1, x0:x1] = (region + 0.5).astype(np.uint8)


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Distance in pixels to the shape's edge, negative inside (exact for circles, close for polygons)."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - np.float32(radius)
    distance = None
    for piece in _convex_pieces(shape, radius, angle):
        piece_distance = _convex_distance(piece, dx, dy)
        distance = piece_distance if distance is None else np.minimum(distance, piece_distance)
    return distance


def _convex_distance(vertices: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """max over edges of the signed distance to the edge's line: ≤ 0 exactly inside a convex polygon."""
    centre = vertices.mean(axis=0)
    distance = None
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0)):
        nx, ny = float(b[1] - a[1]), float(a[0] - b[0])
        length = math.hypot(nx, ny)
        if nx * (centre[0] - a[0]) + ny * (centre[1] - a[1]) > 0:  # point outwards whatever the vertex order
            length = -length
        nx, ny = nx / length, ny / length
        # Python floats keep the arrays in float32 (NumPy scalars would promote them to float64).
        edge = dx * nx + dy * ny - float(a[0] * nx + a[1] * ny)
        distance = edge if distance is None else np.maximum(distance, edge)
    return distance


def _convex_pieces(shape: str, radius: float, angle: float) -> list[np.ndarray]:
    """The shape as a union of convex polygons [n, 2], centred on the origin and rotated by ``angle``."""
    if shape == "square":
        theta = np.arange(4) * math.pi / 2 + math.pi / 4
        pieces = [np.stack([np.cos(theta), np.sin(theta)], axis=1) * 1.05]
    elif shape == "triangle":
        theta = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        pieces = [np.stack([np.cos(theta), np.sin(theta)], axis=1) * 1.2]
    elif shape == "diamond":
        pieces = [np.array([(0.0, -1.15), (0.7, 0.0), (0.0, 1.15), (-0.7, 0.0)])]
    elif shape == "star":
        theta = np.arange(10) * math.pi / 5 - math.pi / 2
        reach = np.where(np.arange(10) % 2 == 0, 1.2, 0.5)
        outline = np.stack([np.cos(theta) * reach, np.sin(theta) * reach], axis=1)
        core = outline[1::2]  # the inner pentagon
        tips = []
        for i in range(5):
            tip, left, right = outline[2 * i], outline[(2 * i - 1) % 10], outline[2 * i + 1]
            # Extend each tip past the pentagon along its own edges (still inside the star): pieces that
            # merely touch would leave a half-transparent seam where both edge ramps meet.
            tips.append(np.stack([tip, left + 0.6 * (left - tip), right + 0.6 * (right - tip)]))
        pieces = [core, *tips]
    elif shape == "cross":
        a, b = 0.34, 1.05
        pieces = [np.array([(-a, -b), (a, -b), (a, b), (-a, b)]), np.array([(-b, -a), (b, -a), (b, a), (-b, a)])]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [piece @ rotation.T * radius for piece in pieces]


# ---------------------------------------------------------------------------- encoding


def encode_mp4(frames: Iterator[np.ndarray], spec: VideoSpec, preset: str = "veryfast") -> bytes:
    """H.264 mp4 bytes of ``frames`` (libx264, which the PyAV wheels ship; ``preset`` is x264's)."""
    if "libx264" not in av.codecs_available:
        raise RuntimeError("this PyAV build has no libx264 encoder; install the PyPI 'av' wheel, which ships it")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
        # One encoder thread: x264's output depends on its thread count, which it derives from the CPUs
        # it sees, so a fixed count keeps "same seed, same bytes" across machines and schedulers.
        options = {"preset": preset, "crf": "23", "threads": "1"}
        if spec.keyframe_interval is not None:
            options["g"] = str(spec.keyframe_interval)
        stream.options = options
        for frame in frames:
            for packet in stream.encode(yuv_frame(frame, spec.pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


# BT.601 limited range, what swscale converts untagged RGB with and what decoders assume for untagged video.
_RGB_TO_YUV = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]],
                       np.float32) / np.float32(255)
_YUV_OFFSET = np.array([16, 128, 128], np.float32)


def yuv_frame(rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """uint8 [H, W, 3] RGB as a ``pix_fmt`` frame (yuv420p or yuv444p), converted here rather than by PyAV's swscale.

    swscale's RGB → YUV reads past the image into the frame's uninitialised padding for some sizes (192 × 108
    here), so the same pictures gave different mp4 bytes from one process to the next; NumPy's arithmetic
    depends on nothing but the pixels.
    """
    channels = rgb.astype(np.float32)
    # Element-wise, not a matrix product: BLAS may sum in another order on another thread count or alignment.
    yuv = np.stack([channels[..., 0] * row[0] + channels[..., 1] * row[1] + channels[..., 2] * row[2] + offset
                    for row, offset in zip(_RGB_TO_YUV, _YUV_OFFSET)], axis=-1)
    height, width = rgb.shape[:2]
    if pix_fmt == "yuv444p":
        planes = [yuv[..., channel] for channel in range(3)]
    elif pix_fmt == "yuv420p":
        if height % 2 or width % 2:
            raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
        chroma = yuv[..., 1:].reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))  # 2 × 2 averages
        planes = [yuv[..., 0], chroma[..., 0], chroma[..., 1]]
    else:
        raise ValueError(f"unsupported pixel format {pix_fmt!r}; use yuv420p or yuv444p")
    return frame_with_zeroed_padding([np.rint(plane).clip(0, 255).astype(np.uint8) for plane in planes], pix_fmt)


def frame_with_zeroed_padding(planes: list[np.ndarray], pix_fmt: str) -> av.VideoFrame:
    """A frame holding ``planes`` (uint8 [h, w] each), whose row padding (each plane's line size is rounded up past
    its width) is zeros rather than whatever the allocator left there: the encoder may read it, and the same
    pictures must give the same bytes in every process."""
    height, width = planes[0].shape
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, pixels in zip(frame.planes, planes, strict=True):
        padded = np.zeros((plane.buffer_size // plane.line_size, plane.line_size), np.uint8)
        padded[: pixels.shape[0], : pixels.shape[1]] = pixels
        plane.update(padded.tobytes())
    return frame
