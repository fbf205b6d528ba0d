"""Clip sampling: split a video into equal clips and choose K frames per clip.

Two modes, chosen per collection:

- ``uniform``: the exact frames at the centres of K equal segments of each clip. Accurate timing, but
  with long GOPs the decoder must decode from the previous keyframe up to each sampled frame, so on archive
  video it costs nearly as much as decoding everything (less the frames no other frame refers to, which the
  PyAV reader skips).
- ``keyframe``: keyframes inside the clip and the frames right after them (k, k+1, …), which decode
  straight on from the keyframe. Frames may sit up to a GOP away from the segment centres; a clip
  with no keyframe of its own borrows the keyframe before it (so neighbouring clips of a long GOP can
  share frames). Read with ``VideoSource(decoder="pyav")``: one container open, one seek per keyframe and
  no frame decoded past the last one wanted (docs/decoding.md).

``benchmarks/decode_sampling.py`` measures both against decoding every frame.

``plan_clips`` is pure arithmetic on ``ProbeInfo`` (easy to test); ``decode_clips`` runs a plan on a
``VideoSource``, reading a bounded group of clips per read (``group_clip_reads``).
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pydantic

from pipeline.decode import DECODERS, Decoder, ProbeInfo, Resize, VideoSource


# Who decodes each mode by default: PyAV, which reads the frames decord reads (the same indices, pixels equal to within
# rounding) for less CPU: ~25 % less on keyframe runs, ~35 % less on uniform frames, whose decode skips the frames
# nothing refers to (docs/decoding.md). decord stays the fallback for files PyAV cannot read by timestamp.
MODE_DECODERS: dict[str, Decoder] = {"uniform": "pyav", "keyframe": "pyav"}


class SamplingConfig(pydantic.BaseModel):
    """How clips are cut from a video and which frames represent each clip."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    mode: Literal["uniform", "keyframe"] = "uniform"
    clip_seconds: float = pydantic.Field(default=4.0, gt=0, description="Target clip length in seconds.")
    frames_per_clip: int = pydantic.Field(default=8, ge=1, le=64, description="K frames decoded per clip.")
    max_clips_per_video: int | None = pydantic.Field(
        default=None, ge=1, description="Cap on clips per video; longer clips are used so the cap still covers it."
    )


@dataclass(frozen=True)
class ClipPlan:
    clip_idx: int
    t_start: float
    t_end: float
    frame_indices: tuple[int, ...]


def plan_clips(info: ProbeInfo, config: SamplingConfig,
               key_indices: Sequence[int] | None = None) -> list[ClipPlan]:
    """Equal-length clips covering the whole video, each with ``frames_per_clip`` sorted frame indices.

    ``duration / clip_seconds`` clips rounded half up (at least one, at most ``max_clips_per_video`` and at most
    one per frame), so a video shorter than ``1.5 × clip_seconds`` is a single clip. ``key_indices``
    (from ``VideoSource.key_frame_indices``) is required in keyframe mode.
    """
    frame_count = info.frame_count
    if frame_count <= 0:
        raise ValueError(f"cannot plan clips for a video with {frame_count} frames")
    duration = info.duration_s if math.isfinite(info.duration_s) and info.duration_s > 0 else 0.0
    n_clips = max(1, math.floor(duration / config.clip_seconds + 0.5))  # half up, not Python's half-even
    if config.max_clips_per_video is not None:
        n_clips = min(n_clips, config.max_clips_per_video)
    n_clips = min(n_clips, frame_count)  # every clip owns at least one frame

    keys: list[int] = []
    if config.mode == "keyframe":
        if key_indices is None:
            raise ValueError("keyframe sampling needs key_indices (VideoSource.key_frame_indices())")
        keys = sorted({int(k) for k in key_indices if 0 <= int(k) < frame_count}) or [0]

    plans = []
    for clip_idx in range(n_clips):
        # Frame ranges partition [0, frame_count) into near-equal contiguous parts; the time range is the
        # same fraction of the duration, so the clips cover the video without gaps or overlaps.
        first = round(clip_idx * frame_count / n_clips)
        stop = round((clip_idx + 1) * frame_count / n_clips)
        if config.mode == "uniform":
            indices = _uniform_indices(first, stop, config.frames_per_clip)
        else:
            indices = _keyframe_indices(first, stop, config.frames_per_clip, keys, frame_count)
        plans.append(
            ClipPlan(
                clip_idx=clip_idx,
                t_start=duration * clip_idx / n_clips,
                t_end=duration * (clip_idx + 1) / n_clips,
                frame_indices=tuple(int(i) for i in indices),
            )
        )
    return plans


def decode_clips(path: str | os.PathLike[str], config: SamplingConfig, frame_size: int,
                 *, resize: Resize = "crop", max_frames_per_read: int = 64,
                 decoder: Decoder | None = None) -> Iterator[tuple[ClipPlan, np.ndarray]]:
    """Yield ``(plan, uint8[K, S, S, 3])`` per clip of one video; raises ``DecodeError`` if it cannot.

    Consecutive clips whose frames lie in one GOP are read together (at most ``max_frames_per_read`` frames,
    so memory stays bounded): each read starts again from a keyframe, and reading them separately would decode
    the start of that GOP again for each clip. ``decoder`` overrides the mode's decoder (``MODE_DECODERS``).
    """
    if max_frames_per_read < 1:
        raise ValueError(f"max_frames_per_read must be at least 1, got {max_frames_per_read}")
    if decoder is not None and decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    with VideoSource(path, frame_size, resize=resize, decoder=decoder or MODE_DECODERS[config.mode]) as source:
        keys = source.key_frame_indices()
        plans = plan_clips(source.info, config, keys if config.mode == "keyframe" else None)
        for group in group_clip_reads(plans, keys, max_frames_per_read):
            frames = source.read_frames([i for plan in group for i in plan.frame_indices])
            start = 0
            for plan in group:
                stop = start + len(plan.frame_indices)
                yield plan, frames[start:stop].copy()  # a copy, so one kept clip does not pin the group
                start = stop


def group_clip_reads(plans: Sequence[ClipPlan], key_indices: Sequence[int],
                     max_frames: int) -> list[list[ClipPlan]]:
    """Consecutive plans grouped while each next clip starts in the GOP where the group ends."""
    keys = sorted(key_indices) or [0]

    def keyframe_of(frame: int) -> int:
        return keys[max(0, bisect.bisect_right(keys, frame) - 1)]

    groups: list[list[ClipPlan]] = []
    frames_in_group = 0
    for plan in plans:
        if groups:
            group_end = max(max(p.frame_indices) for p in groups[-1])
            same_gop = keyframe_of(min(plan.frame_indices)) == keyframe_of(group_end)
            if same_gop and frames_in_group + len(plan.frame_indices) <= max_frames:
                groups[-1].append(plan)
                frames_in_group += len(plan.frame_indices)
                continue
        groups.append([plan])
        frames_in_group = len(plan.frame_indices)
    return groups


# ---------------------------------------------------------------------- frame choice


def _uniform_indices(first: int, stop: int, k: int) -> list[int]:
    """Centres of k equal segments of frames [first, stop); repeats only when the clip has < k frames."""
    n = stop - first
    return [first + min(n - 1, int((j + 0.5) * n / k)) for j in range(k)]


def _keyframe_indices(first: int, stop: int, k: int, keys: list[int], frame_count: int) -> list[int]:
    inside = keys[bisect.bisect_left(keys, first):bisect.bisect_left(keys, stop)]
    if len(inside) >= k:
        return _spread_keyframes(inside, first, stop, k)
    if inside:
        # Each keyframe's run may grow up to the next keyframe (or the clip end): frames k+1, k+2, …
        # decode straight on from k, while anything past the next keyframe belongs to another run.
        limits = inside[1:] + [stop]
        return _fill_runs(inside, limits, k)
    # No keyframe in the clip: reaching any frame of it means decoding from the keyframe before it,
    # so take that keyframe and the frames after it instead of paying for a seek into the GOP.
    before = bisect.bisect_right(keys, first) - 1
    anchor = keys[before] if before >= 0 else keys[0]
    next_key = bisect.bisect_right(keys, anchor)
    limit = keys[next_key] if next_key < len(keys) else frame_count
    return _fill_runs([anchor], [limit], k)


def _spread_keyframes(candidates: list[int], first: int, stop: int, k: int) -> list[int]:
    """k distinct keyframes, each the closest still-free one to the centre of one of k equal segments."""
    free = list(candidates)
    chosen = []
    for j in range(k):
        centre = first + (j + 0.5) * (stop - first) / k
        best = min(range(len(free)), key=lambda i: (abs(free[i] - centre), free[i]))
        chosen.append(free.pop(best))
    return sorted(chosen)


def _fill_runs(starts: list[int], limits: list[int], k: int) -> list[int]:
    """k sorted frames as runs ``start, start+1, …`` below each limit, grown round-robin; repeats if short."""
    lengths = [1] * len(starts)
    capacity = [max(1, limit - start) for start, limit in zip(starts, limits)]
    total = len(starts)
    while total < k and any(length < cap for length, cap in zip(lengths, capacity)):
        for i in range(len(starts)):
            if total < k and lengths[i] < capacity[i]:
                lengths[i] += 1
                total += 1
    frames = sorted(start + offset for start, length in zip(starts, lengths) for offset in range(length))
    if len(frames) >= k:
        return frames[:k]
    # Fewer distinct frames than k: repeat them evenly, keeping the order.
    return [frames[int(j * len(frames) / k)] for j in range(k)]
