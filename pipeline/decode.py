"""Video decoding behind a small interface: probe a file, read chosen frames at reduced resolution.

decord does the decoding (``VideoReader.get_batch``); the rest of the pipeline only sees
``VideoSource``/``probe_video``/``DecodeError``, so the decoder can be swapped (decord2, torchcodec).
PyAV reads the container header first: it is cheap (no decoding), gives the coded frame size that
decord 0.6 does not expose, lets the resolution guard act before anything is decoded, and tells
"not a video" apart from "truncated video" for the error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import av
import decord
import numpy as np

from hashing.encoders.base import RESIZE_MODES, Resize

# 2 × 4096² ≈ 33.5 M pixels: above 8K UHD (33.2 M), so every real camera format passes, while a
# corrupt header claiming 60000×60000 fails before decord allocates anything.
DEFAULT_MAX_PIXELS = 4096 * 4096 * 2
# Output widths at which decord 0.6.0 (its bundled FFmpeg) returns padded rows and then fails with
# "The size must exactly match": measured over widths 8…2100 at several heights; all others decode.
_DECORD_BAD_WIDTHS = frozenset({8, 12, 16, 24, 48, 72})
# Frame rates outside this range are broken metadata, not real video.
_MIN_FPS, _MAX_FPS = 0.1, 1000.0

# Leading bytes of containers a video archive holds; used only to word the error of a file that
# neither PyAV nor decord can open ("truncated" when the container is recognisable).
_MP4_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
_TS_PACKET = 188
_CONTAINER_MAGIC = {
    b"\x1a\x45\xdf\xa3": "Matroska/WebM",
    b"RIFF": "AVI",
    b"FLV": "FLV",
    b"OggS": "Ogg",
    b"\x00\x00\x01\xba": "MPEG-PS",
    b"\x30\x26\xb2\x75": "ASF/WMV",
}


class DecodeError(Exception):
    """A media file that cannot be probed or decoded; ``str()`` is one readable line."""


@dataclass(frozen=True)
class ProbeInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    frame_count: int


def probe_video(path: str) -> ProbeInfo:
    """Duration, frame rate, coded size and frame count of a video file; ``DecodeError`` if unreadable."""
    with VideoSource(path, frame_size=None) as source:
        return source.info


def reduced_size(width: int, height: int, frame_size: int) -> tuple[int, int]:
    """(width, height) whose short side is ``frame_size`` and whose aspect ratio matches the source.

    The long side is rounded to an even number (friendlier to scalers) but never below ``frame_size``,
    so a centre crop of ``frame_size``×``frame_size`` always fits.
    """
    if width <= 0 or height <= 0 or frame_size <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} and frame_size={frame_size}")
    if width >= height:
        long_side = max(frame_size, 2 * round(width * frame_size / height / 2))
        return long_side, frame_size
    long_side = max(frame_size, 2 * round(height * frame_size / width / 2))
    return frame_size, long_side


def fitted_size(width: int, height: int, frame_size: int) -> tuple[int, int]:
    """(width, height) whose long side is ``frame_size`` and whose aspect ratio matches the source.

    The short side is rounded to an even number of at least 2 (a square source stays S×S), never above
    ``frame_size``, so the frame always fits in an S×S square (the rest is padding).
    """
    if width <= 0 or height <= 0 or frame_size <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} and frame_size={frame_size}")
    long_side, short_side = max(width, height), min(width, height)
    ideal = short_side * frame_size / long_side
    fitted = frame_size if ideal >= frame_size else min(frame_size, max(2, 2 * round(ideal / 2)))
    return (frame_size, fitted) if width >= height else (fitted, frame_size)


def scaled_size(width: int, height: int, frame_size: int, resize: Resize) -> tuple[int, int]:
    """The size a frame is scaled to before it becomes S×S: ``reduced_size`` to crop, ``fitted_size`` to fit."""
    check_resize(resize)
    return (reduced_size if resize == "crop" else fitted_size)(width, height, frame_size)


def check_resize(resize: str) -> None:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")


def to_square(frames: np.ndarray, size: int) -> np.ndarray:
    """``[n, h, w, C]`` -> contiguous ``[n, size, size, 3]``: centre-crop sides longer than ``size``,
    centre-pad shorter ones with black."""
    frames = frames[..., :3]
    height, width = frames.shape[1:3]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    frames = frames[:, top:top + size, left:left + size]
    height, width = frames.shape[1:3]
    if (height, width) == (size, size):
        return np.ascontiguousarray(frames)
    out = np.zeros((frames.shape[0], size, size, 3), frames.dtype)
    top, left = (size - height) // 2, (size - width) // 2
    out[:, top:top + height, left:left + width] = frames
    return out


class VideoSource:
    """One open video: its probe info, its keyframes, and frames read by index.

    ``frame_size=S`` makes decord scale while decoding so that the short side is S (aspect kept),
    then the centre S×S square is cut out (``resize="crop"``), or so that the long side is S, padded
    to S×S (``resize="fit"``); ``frame_size=None`` returns full frames. Use as a context manager so
    the decoder is released promptly.
    """

    def __init__(self, path: str | os.PathLike[str], frame_size: int | None,
                 *, resize: Resize = "crop", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if frame_size is not None and frame_size <= 0:
            raise ValueError(f"frame_size must be a positive number of pixels or None, got {frame_size}")
        check_resize(resize)
        self.path = str(path)
        self.frame_size = frame_size
        self.resize = resize
        width, height = _read_header(self.path)
        if width * height > max_pixels:
            raise DecodeError(
                f"resolution {width}x{height} exceeds the limit of {max_pixels:,} pixels "
                "(raise max_pixels if such files are expected)"
            )
        if frame_size is None:
            # Always pass an explicit size: decord 0.6 at its default size returns broken 4-channel
            # frames for files with a rotation matrix. Explicit sizes give the coded orientation.
            self._decode_width, self._decode_height = width, height
        else:
            self._decode_width, self._decode_height = scaled_size(width, height, frame_size, resize)
            if self._decode_width in _DECORD_BAD_WIDTHS:
                # 2 px wider still crops to S×S; a fitted frame narrower than S gets 2 px narrower so it
                # still fits. The aspect changes by ≤ 25 %, only at tiny sizes.
                narrower = resize == "fit" and self._decode_width < frame_size
                self._decode_width += -2 if narrower else 2
        self._reader = _open_reader(self.path, self._decode_width, self._decode_height)
        frame_count = len(self._reader)
        fps = float(self._reader.get_avg_fps())
        if frame_count <= 0:
            raise DecodeError("no decodable frames (frame count is 0)")
        if not (_MIN_FPS <= fps <= _MAX_FPS):  # also rejects NaN
            raise DecodeError(f"invalid frame rate {fps!r} in the file's metadata")
        # duration = frame_count / fps keeps time and frame index on one scale, which clip plans rely on.
        self._info = ProbeInfo(duration_s=frame_count / fps, fps=fps, width=width, height=height,
                               frame_count=frame_count)

    @property
    def info(self) -> ProbeInfo:
        """Probe info of the original file (coded width/height, not the reduced decode size)."""
        return self._info

    @property
    def decode_size(self) -> tuple[int, int]:
        """(width, height) decord decodes to, before the centre crop or padding."""
        return self._decode_width, self._decode_height

    def key_frame_indices(self) -> list[int]:
        """Indices of the frames that start a GOP (where decoding can begin without earlier frames)."""
        reader = self._require_open()
        try:
            keys = [int(k) for k in reader.get_key_indices()]
        except (decord.DECORDError, RuntimeError) as error:
            raise DecodeError(f"cannot read keyframe index: {_decord_message(error)}") from None
        # The first frame is decodable on its own in every stream we can open; an empty index would
        # otherwise leave keyframe sampling with nothing to anchor on.
        return keys or [0]

    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [n, S, S, 3] RGB frames at ``indices`` (any order, repeats allowed)."""
        reader = self._require_open()
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        height, width = self._output_hw()
        if wanted.size == 0:
            return np.empty((0, height, width, 3), np.uint8)
        frame_count = self._info.frame_count
        if wanted.min() < 0 or wanted.max() >= frame_count:
            raise ValueError(f"frame indices must lie in [0, {frame_count - 1}], got {wanted.min()}..{wanted.max()}")
        # Ask decord for each frame once, in order, so it decodes forward instead of seeking back.
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            batch = reader.get_batch(unique.tolist())
            frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        except (decord.DECORDError, RuntimeError) as error:
            raise DecodeError(f"truncated or corrupt video: cannot decode frames: {_decord_message(error)}") from None
        finally:
            # decord keeps decoder buffers alive after get_batch and memory grows with every call
            # (dmlc/decord#197); seeking resets the decoder and releases them.
            _reset_reader(reader)
        frames = self._to_output(frames)
        return frames if np.array_equal(unique, wanted) else frames[inverse]

    def close(self) -> None:
        self._reader = None  # decord frees the native reader when the object is collected

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _require_open(self) -> decord.VideoReader:
        if self._reader is None:
            raise RuntimeError(f"VideoSource for {self.path} is closed")
        return self._reader

    def _output_hw(self) -> tuple[int, int]:
        if self.frame_size is None:
            return self._decode_height, self._decode_width
        return self.frame_size, self.frame_size

    def _to_output(self, frames: np.ndarray) -> np.ndarray:
        if self.frame_size is None:
            return np.ascontiguousarray(frames[..., :3])
        size = self.frame_size
        height, width = frames.shape[1:3]
        if self.resize == "crop" and (height < size or width < size):  # decord did not honour the requested size
            raise DecodeError(f"decoder returned {width}x{height} frames, smaller than the {size}x{size} crop")
        return to_square(frames, size)


def _reset_reader(reader: decord.VideoReader) -> None:
    try:
        reader.seek(0)
    except (decord.DECORDError, RuntimeError):
        pass  # a failed reset only costs memory; the caller already has its frames or its error


def _read_header(path: str) -> tuple[int, int]:
    """Coded (width, height) of the first video stream, read from the container header only."""
    file = Path(path)
    if not file.exists():
        raise DecodeError(f"file not found: {path}")
    if not file.is_file():
        raise DecodeError(f"not a regular file: {path}")
    if file.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        with av.open(path, mode="r") as container:
            streams = [stream.type for stream in container.streams]
            if not container.streams.video:
                found = ", ".join(streams) if streams else "none"
                raise DecodeError(f"not a video file: cannot find a video stream (streams found: {found})")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    except DecodeError:
        raise
    except PermissionError:
        raise DecodeError(f"permission denied: {path}") from None
    except (av.error.InvalidDataError, av.error.FFmpegError, OSError) as error:
        raise DecodeError(_describe_unopenable(file, error)) from None
    if width <= 0 or height <= 0:
        raise DecodeError(f"invalid frame size {width}x{height} in the video stream header")
    return width, height


def _open_reader(path: str, width: int, height: int) -> decord.VideoReader:
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    except AssertionError as error:  # decord asserts frame_count > 0 after opening
        raise DecodeError(f"no decodable frames ({error})") from None
    except (decord.DECORDError, RuntimeError) as error:
        message = _decord_message(error)
        if "av_read_frame failed" in message:
            raise DecodeError("truncated or corrupt video: packets cannot be read to the end "
                              "(file cut short?)") from None
        if "cannot find video stream" in message:
            raise DecodeError("not a video file: cannot find a video stream") from None
        if "broken metadata" in message:
            raise DecodeError("cannot measure duration/frame count: broken metadata "
                              "(a still image or a stream without timestamps?)") from None
        raise DecodeError(f"cannot open video: {message}") from None


def _describe_unopenable(file: Path, error: Exception) -> str:
    with open(file, "rb") as handle:
        head = handle.read(_TS_PACKET + 1)
    container = _sniff_container(head)
    if container is None:
        return f"not a video file: no known container format recognised (starts with {head[:8].hex()})"
    reason = getattr(error, "strerror", None) or str(error)
    return f"truncated or corrupt video: the {container} container cannot be parsed ({reason})"


def _sniff_container(head: bytes) -> str | None:
    if len(head) >= 8 and head[4:8] in _MP4_BOX_TYPES:
        return "MP4/QuickTime"
    if len(head) > _TS_PACKET and head[0] == head[_TS_PACKET] == 0x47:  # MPEG-TS sync bytes
        return "MPEG-TS"
    for magic, name in _CONTAINER_MAGIC.items():
        if head.startswith(magic):
            return name
    return None


_DECORD_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")


def _decord_message(error: BaseException) -> str:
    """First meaningful line of a decord error, without its timestamp/source-file prefix."""
    for line in str(error).splitlines():
        line = _DECORD_PREFIX.sub("", line.strip())
        if line and not line.startswith("Stack trace"):
            return line.removeprefix("Error: ").removeprefix("ERROR ")[:300]
    return type(error).__name__
