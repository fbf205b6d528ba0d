"""Video decoding behind a small interface: probe a file, read chosen frames at reduced resolution.

The rest of the pipeline only sees ``VideoSource``/``probe_video``/``DecodeError``, so the decoder can be
swapped (decord2, torchcodec). ``VideoSource`` has two decoders behind it (docs/decoding.md):

- ``decoder="decord"`` (the default: uniform sampling, ``probe_video``): decord's ``VideoReader.get_batch``.
  PyAV reads the container header first: it gives the coded frame size that decord 0.6 does not expose, lets
  the resolution guard act before anything is decoded, and tells "not a video" apart from "truncated video"
  for the error message.
- ``decoder="pyav"`` (keyframe sampling): one PyAV container serves everything — a header read that decodes
  nothing, one pass over the packets for the frame count and the keyframes (the same counts decord reports),
  then each run of frames is one seek to its keyframe and a decode that stops as soon as the run is out, and
  frames are scaled and converted to RGB straight to the decode size.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import decord
import numpy as np
from av.video.reformatter import VideoReformatter

from hashing.encoders.base import RESIZE_MODES, Resize

# 2 × 4096² ≈ 33.5 M pixels: above 8K UHD (33.2 M), so every real camera format passes, while a
# corrupt header claiming 60000×60000 fails before decord allocates anything.
DEFAULT_MAX_PIXELS = 4096 * 4096 * 2
# Output widths at which decord 0.6.0 (its bundled FFmpeg) returns padded rows and then fails with
# "The size must exactly match": measured over widths 8…2100 at several heights; all others decode.
_DECORD_BAD_WIDTHS = frozenset({8, 12, 16, 24, 48, 72})
# Frame rates outside this range are broken metadata, not real video.
_MIN_FPS, _MAX_FPS = 0.1, 1000.0

Decoder = Literal["decord", "pyav"]
DECODERS: tuple[str, ...] = ("decord", "pyav")
# The scaler of the PyAV decoder: swscale's bilinear, which is what decord 0.6's bundled FFmpeg scales with, so
# both decoders give the same pixels to within rounding. Fast bilinear is ~0.4 ms/frame cheaper at 720p but only
# interpolates between neighbouring pixels when shrinking, so fine detail aliases (docs/decoding.md).
_PYAV_INTERPOLATION = "BILINEAR"

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

    ``frame_size=S`` scales while decoding so that the short side is S (aspect kept), then the centre S×S
    square is cut out (``resize="crop"``), or so that the long side is S, padded to S×S (``resize="fit"``);
    ``frame_size=None`` returns full frames. ``decoder`` chooses who decodes (module docstring): ``"pyav"``
    falls back to decord for a file whose packets cannot be told apart by timestamp (``self.decoder`` says
    which one is reading). Use as a context manager so the decoder is released promptly.
    """

    def __init__(self, path: str | os.PathLike[str], frame_size: int | None,
                 *, resize: Resize = "crop", max_pixels: int = DEFAULT_MAX_PIXELS,
                 decoder: Decoder = "decord") -> None:
        if frame_size is not None and frame_size <= 0:
            raise ValueError(f"frame_size must be a positive number of pixels or None, got {frame_size}")
        check_resize(resize)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.path = str(path)
        self.frame_size = frame_size
        self.resize = resize
        container = None
        try:
            if decoder == "pyav":
                container, width, height = _open_video_container(self.path)
            else:
                width, height = _read_header(self.path)
            if width <= 0 or height <= 0:
                raise DecodeError(f"invalid frame size {width}x{height} in the video stream header")
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
                    # still fits. The aspect changes by ≤ 25 %, only at tiny sizes. (PyAV has no such limit;
                    # both decoders use the same size so that they give the same frames.)
                    narrower = resize == "fit" and self._decode_width < frame_size
                    self._decode_width += -2 if narrower else 2
            frames: _DecordFrames | _PyAVFrames | None = None
            if container is not None:
                frames = _PyAVFrames.open(container, self._decode_width, self._decode_height)
                if frames is None:
                    container.close()
            container = None  # owned by ``frames`` now, or closed
            if frames is None:
                frames = _DecordFrames(self.path, self._decode_width, self._decode_height)
        except BaseException:
            if container is not None:
                container.close()
            raise
        self._frames: _DecordFrames | _PyAVFrames | None = frames
        frame_count, fps = frames.frame_count, frames.fps
        if frame_count <= 0:
            self.close()
            raise DecodeError("no decodable frames (frame count is 0)")
        if not (_MIN_FPS <= fps <= _MAX_FPS):  # also rejects NaN
            self.close()
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
        """(width, height) frames are scaled to, before the centre crop or padding."""
        return self._decode_width, self._decode_height

    @property
    def decoder(self) -> str:
        """The decoder reading frames: ``"decord"`` or ``"pyav"``."""
        return self._require_open().name

    @property
    def frames_decoded(self) -> int | None:
        """Frames the PyAV reader's decoder has returned so far (skipped frames not counted); None for decord,
        which does not say."""
        frames = self._require_open()
        return frames.frames_decoded if isinstance(frames, _PyAVFrames) else None

    def key_frame_indices(self) -> list[int]:
        """Indices of the frames that start a GOP (where decoding can begin without earlier frames)."""
        keys = self._require_open().key_indices()
        # The first frame is decodable on its own in every stream we can open; an empty index would
        # otherwise leave keyframe sampling with nothing to anchor on.
        return keys or [0]

    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [n, S, S, 3] RGB frames at ``indices`` (any order, repeats allowed)."""
        frames_source = self._require_open()
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        height, width = self._output_hw()
        if wanted.size == 0:
            return np.empty((0, height, width, 3), np.uint8)
        frame_count = self._info.frame_count
        if wanted.min() < 0 or wanted.max() >= frame_count:
            raise ValueError(f"frame indices must lie in [0, {frame_count - 1}], got {wanted.min()}..{wanted.max()}")
        # Ask for each frame once, in order, so the decoder decodes forward instead of seeking back.
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            frames = frames_source.read(unique.tolist())
        except _NotByTimestamp:
            # From here on decord reads this file, as it did before the PyAV decoder existed. Its frame count is
            # the same packet count; the keyframes handed out stay valid frame indices.
            self.close()
            self._frames = frames_source = _DecordFrames(self.path, self._decode_width, self._decode_height)
            frames = frames_source.read(unique.tolist())
        frames = self._to_output(frames)
        return frames if np.array_equal(unique, wanted) else frames[inverse]

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _require_open(self) -> _DecordFrames | _PyAVFrames:
        if self._frames is None:
            raise RuntimeError(f"VideoSource for {self.path} is closed")
        return self._frames

    def _output_hw(self) -> tuple[int, int]:
        if self.frame_size is None:
            return self._decode_height, self._decode_width
        return self.frame_size, self.frame_size

    def _to_output(self, frames: np.ndarray) -> np.ndarray:
        if self.frame_size is None:
            return np.ascontiguousarray(frames[..., :3])
        size = self.frame_size
        height, width = frames.shape[1:3]
        if self.resize == "crop" and (height < size or width < size):  # the decoder did not honour the requested size
            raise DecodeError(f"decoder returned {width}x{height} frames, smaller than the {size}x{size} crop")
        return to_square(frames, size)


class _DecordFrames:
    """Frames read with decord at the decode size (exact seeking: what uniform sampling uses)."""

    name = "decord"

    def __init__(self, path: str, width: int, height: int) -> None:
        self._reader = _open_reader(path, width, height)
        self.frame_count = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def key_indices(self) -> list[int]:
        try:
            return [int(k) for k in self._reader.get_key_indices()]
        except (decord.DECORDError, RuntimeError) as error:
            raise DecodeError(f"cannot read keyframe index: {_decord_message(error)}") from None

    def read(self, unique: list[int]) -> np.ndarray:
        """uint8 [n, h, w, C] frames at the sorted distinct ``unique`` indices."""
        try:
            batch = self._reader.get_batch(unique)
            return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        except (decord.DECORDError, RuntimeError) as error:
            raise DecodeError(f"truncated or corrupt video: cannot decode frames: {_decord_message(error)}") from None
        finally:
            # decord keeps decoder buffers alive after get_batch and memory grows with every call
            # (dmlc/decord#197); seeking resets the decoder and releases them.
            _reset_reader(self._reader)

    def close(self) -> None:
        self._reader = None  # decord frees the native reader when the object is collected


class _PyAVFrames:
    """Frames read with PyAV from the container that gave the header.

    Frame ``i`` is the frame with the i-th smallest packet timestamp (pts), as in decord, and decoded frames
    are recognised by their pts. A keyframe index is the position of a keyframe packet in that order (decord
    counts packets in file order instead: the same numbers for closed GOPs; for open GOPs these are the frames
    that really start a run). A file where that does not hold — decoded frames out of pts order (AVI with
    B-frames, whose "pts" count packets), or frames not found after the seek — raises ``_NotByTimestamp`` and
    ``VideoSource`` reads it with decord instead.
    """

    name = "pyav"

    def __init__(self, container: av.container.InputContainer, pts: list[int], keys: dict[int, int | None],
                 width: int, height: int) -> None:
        self._container = container
        self._stream = container.streams.video[0]
        self._pts = pts
        self._keys, self._key_dts = sorted(keys), keys
        self._width, self._height = width, height
        self._reformatter = VideoReformatter()
        self.frames_decoded = 0  # frames the decoder has returned so far (skipped packets return none)
        self.frame_count = len(pts)
        rate = self._stream.average_rate  # the field decord reports as its average frame rate
        self.fps = float(rate) if rate else math.nan

    @classmethod
    def open(cls, container: av.container.InputContainer, width: int, height: int) -> _PyAVFrames | None:
        """Index the packets of ``container``'s first video stream (no decoding); None if PyAV cannot read this
        file by timestamp (no decoder, a packet without a pts, two packets with one pts): decord reads it then."""
        stream = container.streams.video[0]
        if stream.codec_context is None:
            return None
        stream.codec_context.thread_count = 1
        pts: list[int] = []
        key_packets: list[tuple[int, int | None]] = []  # (pts, dts)
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    if packet.size == 0:
                        continue  # the empty packet demux ends with, to flush decoders
                    return None
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_packets.append((packet.pts, packet.dts))
        except (av.error.FFmpegError, OSError) as error:
            raise DecodeError("truncated or corrupt video: packets cannot be read to the end "
                              f"({_av_message(error)})") from None
        if 0 < len(pts) < stream.frames:
            raise DecodeError(f"truncated or corrupt video: the header lists {stream.frames} frames, only "
                              f"{len(pts)} can be read (file cut short?)")
        pts.sort()
        position = {p: i for i, p in enumerate(pts)}
        if len(position) < len(pts):
            return None
        keys = {position[key_pts]: key_dts for key_pts, key_dts in key_packets}
        return cls(container, pts, keys, width, height)

    def key_indices(self) -> list[int]:
        return list(self._keys)

    def read(self, unique: list[int]) -> np.ndarray:
        """uint8 [n, h, w, 3] frames at the sorted distinct ``unique`` indices: one seek per keyframe they need."""
        frames: dict[int, np.ndarray] = {}
        try:
            for key, run in itertools.groupby(unique, self._keyframe_of):
                want = {self._pts[i]: i for i in run}
                got = self._decode_run(key, want)
                if len(got) < len(want):
                    raise _NotByTimestamp(f"frames {sorted(set(want.values()) - set(got))} not found")
                frames.update(got)
        except (av.error.FFmpegError, OSError) as error:
            raise DecodeError(f"truncated or corrupt video: cannot decode frames: {_av_message(error)}") from None
        return np.stack([frames[i] for i in unique])

    def close(self) -> None:
        self._container.close()

    def _keyframe_of(self, index: int) -> int:
        return self._keys[max(0, bisect.bisect_right(self._keys, index) - 1)] if self._keys else 0

    def _packets_from(self, key: int) -> Iterator[av.Packet]:
        """The stream's packets from keyframe ``key`` on (or from an earlier keyframe), decoder flushed."""
        container, stream = self._container, self._stream
        key_pts = self._pts[key]
        key_dts = self._key_dts.get(key)
        for target in (key_pts, key_pts if key_dts is None else key_dts):
            try:
                container.seek(target, stream=stream, backward=True)  # also flushes the decoder
            except av.error.FFmpegError as error:
                raise _NotByTimestamp(f"cannot seek: {_av_message(error)}") from None
            packets = container.demux(stream)
            first = next(packets, None)
            if first is None or first.pts is None or first.pts <= key_pts:
                break
            # Landed past the keyframe: the container seeks by decode timestamp (MPEG-TS), which is smaller
            # than the keyframe's pts when B-frames follow it. Seek again by its dts.
        return packets if first is None else itertools.chain([first], packets)

    def _decode_run(self, key: int, want: dict[int, int]) -> dict[int, np.ndarray]:
        """Decode from keyframe ``key`` until every frame of ``want`` (pts -> index) is out: index -> [h, w, 3]."""
        codec = self._stream.codec_context
        unfed, got, last_pts = set(want), {}, None
        for packet in self._packets_from(key):
            end_of_file = packet.size == 0 and packet.pts is None
            if end_of_file:
                frames = codec.decode(None)
            else:
                unfed.discard(packet.pts)
                # A frame no other frame refers to (most B-frames) is skipped by the decoder unless it is wanted:
                # the frames that are decoded, and so the wanted ones, come out with exactly the same pixels.
                codec.skip_frame = "DEFAULT" if packet.pts in want else "NONREF"
                frames = codec.decode(packet)
                if not unfed:
                    # Every wanted frame's packet is in. The decoder holds frames back to reorder B-frames;
                    # draining it returns them without decoding the packets that follow.
                    frames += codec.decode(None)
            self.frames_decoded += len(frames)
            for frame in frames:
                if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                    raise _NotByTimestamp(f"decoded frames out of timestamp order ({last_pts} then {frame.pts})")
                last_pts = frame.pts
                index = want.get(frame.pts)
                if index is not None:
                    got[index] = self._reformatter.reformat(
                        frame, self._width, self._height, "rgb24", interpolation=_PYAV_INTERPOLATION, threads=1,
                    ).to_ndarray()
            if end_of_file or not unfed:
                break
        return got


class _NotByTimestamp(Exception):
    """PyAV cannot find a file's frames by their packet timestamps; decord reads the file instead."""


def _reset_reader(reader: decord.VideoReader) -> None:
    try:
        reader.seek(0)
    except (decord.DECORDError, RuntimeError):
        pass  # a failed reset only costs memory; the caller already has its frames or its error


def _read_header(path: str) -> tuple[int, int]:
    """Coded (width, height) of the first video stream, from the header and FFmpeg's usual stream probe."""
    with _open_input(path, probe_frames=True) as container:
        return _video_stream_size(container)


def _open_video_container(path: str) -> tuple[av.container.InputContainer, int, int]:
    """An open container and the coded (width, height) of its first video stream, without decoding a frame.

    FFmpeg's stream probe decodes the first frame (an I-frame: ~20 ms at 720p) unless told to skip frames;
    the size then comes from the container header, and a format whose header does not store it is probed
    the usual way.
    """
    container = _open_input(path, probe_frames=False)
    try:
        width, height = _video_stream_size(container)
        if width <= 0 or height <= 0:
            container.close()
            container = _open_input(path, probe_frames=True)
            width, height = _video_stream_size(container)
    except BaseException:
        container.close()
        raise
    return container, width, height


def _open_input(path: str, *, probe_frames: bool) -> av.container.InputContainer:
    file = Path(path)
    if not file.exists():
        raise DecodeError(f"file not found: {path}")
    if not file.is_file():
        raise DecodeError(f"not a regular file: {path}")
    if file.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    # ``options`` reach the decoders of the stream probe (avformat_find_stream_info), not the ones PyAV
    # decodes with later.
    options = None if probe_frames else {"skip_frame": "all"}
    try:
        return av.open(path, mode="r", options=options)
    except PermissionError:
        raise DecodeError(f"permission denied: {path}") from None
    except (av.error.InvalidDataError, av.error.FFmpegError, OSError) as error:
        raise DecodeError(_describe_unopenable(file, error)) from None


def _video_stream_size(container: av.container.InputContainer) -> tuple[int, int]:
    if not container.streams.video:
        streams = [stream.type for stream in container.streams]
        found = ", ".join(streams) if streams else "none"
        raise DecodeError(f"not a video file: cannot find a video stream (streams found: {found})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise DecodeError("unsupported video codec: FFmpeg has no decoder for it")
    return int(stream.codec_context.width), int(stream.codec_context.height)


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


def _av_message(error: BaseException) -> str:
    """One line of a PyAV/FFmpeg error."""
    message = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return message.splitlines()[0][:300]


_DECORD_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")


def _decord_message(error: BaseException) -> str:
    """First meaningful line of a decord error, without its timestamp/source-file prefix."""
    for line in str(error).splitlines():
        line = _DECORD_PREFIX.sub("", line.strip())
        if line and not line.startswith("Stack trace"):
            return line.removeprefix("Error: ").removeprefix("ERROR ")[:300]
    return type(error).__name__
