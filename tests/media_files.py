"""Tiny real media files for tests (shared by several test modules)."""

from __future__ import annotations

from pathlib import Path

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
