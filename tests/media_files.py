"""Tiny real media files for tests (shared by several test modules)."""

from __future__ import annotations

from pathlib import Path

from collections.abc import Iterable

import av
import numpy as np


def write_tiny_mp4(path: Path, seconds: float = 1.0, fps: int = 10, seed: int = 0) -> Path:
    """A real H.264 mp4 (64x48, yuv420p) written with PyAV."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(int(seconds * fps)):
            pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_h264(path: Path, frames: Iterable[np.ndarray], fps: int, options: dict[str, str]) -> Path:
    """uint8 RGB ``frames`` as an H.264 mp4 (yuv420p) with x264 ``options`` (preset, g, crf, ...)."""
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        stream.options = options
        for pixels in (first, *frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
