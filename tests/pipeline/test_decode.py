"""Tests for pipeline/decode.py on tiny real H.264 files written with PyAV and read with decord."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import decode
from pipeline.decode import (DECODERS, DecodeError, ProbeInfo, VideoSource, fitted_size, probe_video, reduced_size,
                             to_square)

FPS = 15
N_FRAMES = 30  # 2 s


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = FPS, keyint: int = 10,
              faststart: bool = False, pix_fmt: str = "yuv420p", preset: str = "ultrafast",
              x264_params: str | None = None) -> Path:
    """H.264 of RGB frames in the container the suffix names; ``faststart`` puts the mp4 index (moov) before the
    data. ``ultrafast`` writes no B-frames, ``medium`` up to 3 in a row (decode order differs from display order)."""
    height, width = frames[0].shape[:2]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"preset": preset, "g": str(keyint), "crf": "10",
                          **({"x264-params": x264_params} if x264_params else {})}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def index_frames(width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Frame i is uniformly grey at level 8·i, so a decoded frame tells which index it is."""
    return [np.full((height, width, 3), 8 * i, np.uint8) for i in range(N_FRAMES)]


def band_frames(width: int, height: int) -> list[np.ndarray]:
    """Red outer quarters and a green middle half along the long side (constant over time)."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = 255
    if width >= height:
        frame[:, width // 4: 3 * width // 4] = (0, 255, 0)
    else:
        frame[height // 4: 3 * height // 4, :] = (0, 255, 0)
    return [frame] * 6


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode")
    index = write_mp4(root / "index.mp4", index_frames())
    data = index.read_bytes()
    faststart = write_mp4(root / "faststart.mp4", index_frames(), faststart=True)
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "truncated_faststart.mp4").write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    write_audio_only(root / "audio.m4a")
    return {
        "index": index,
        "bframes": write_mp4(root / "bframes.mp4", index_frames(), preset="medium"),
        # Open GOPs: B-frames right after an I-frame in file order are shown before it and refer to the GOP before.
        "open_gop": write_mp4(root / "open_gop.mp4", index_frames(), keyint=12, preset="medium",
                              x264_params="open-gop=1"),
        "wide": write_mp4(root / "wide.mp4", band_frames(96, 48)),
        "tall": write_mp4(root / "tall.mp4", band_frames(48, 96)),
        # Odd sizes cannot be 4:2:0; x264 stores them as 4:4:4, which decord decodes.
        "odd": write_mp4(root / "odd.mp4", index_frames(63, 47)[:5], pix_fmt="yuv444p"),
        **{name: root / f"{name}.mp4" for name in ("zero", "text", "truncated", "truncated_faststart")},
        "audio": root / "audio.m4a",
        "missing": root / "missing.mp4",
    }


def write_audio_only(path: Path) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=22050)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 22050, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def grey_level(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(frames.shape[0], -1).mean(axis=1)


def test_probe_reports_duration_fps_size_and_frame_count(videos: dict[str, Path]) -> None:
    info = probe_video(str(videos["index"]))
    assert isinstance(info, ProbeInfo)
    assert info == ProbeInfo(duration_s=pytest.approx(2.0), fps=pytest.approx(15.0), width=64, height=48,
                             frame_count=30)


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_returns_the_requested_frames_in_the_requested_order(videos: dict[str, Path], decoder: str) -> None:
    with VideoSource(videos["index"], frame_size=24, decoder=decoder) as source:
        assert source.decoder == decoder
        frames = source.read_frames([20, 3, 3, 29, 0])
        assert frames.shape == (5, 24, 24, 3) and frames.dtype == np.uint8
        np.testing.assert_allclose(grey_level(frames), [160, 24, 24, 232, 0], atol=4)
        # A second read after the decoder reset (and going backwards) gives the same pixels.
        again = source.read_frames([3, 20])
    np.testing.assert_array_equal(again, frames[[1, 0]])


@pytest.mark.parametrize("decoder", DECODERS)
def test_odd_sized_444_video(videos: dict[str, Path], decoder: str) -> None:
    info = probe_video(str(videos["odd"]))
    assert (info.width, info.height, info.frame_count) == (63, 47, 5)
    with VideoSource(videos["odd"], frame_size=20, decoder=decoder) as source:
        frames = source.read_frames([0, 4])
    assert frames.shape == (2, 20, 20, 3)
    np.testing.assert_allclose(grey_level(frames), [0, 32], atol=4)


def test_probe_info_is_an_immutable_value() -> None:
    info = ProbeInfo(duration_s=1.0, fps=10.0, width=4, height=2, frame_count=10)
    with pytest.raises(AttributeError):
        info.fps = 5.0  # type: ignore[misc]


@pytest.mark.parametrize("decoder", DECODERS)
def test_full_size_frames_without_frame_size(videos: dict[str, Path], decoder: str) -> None:
    with VideoSource(videos["index"], frame_size=None, decoder=decoder) as source:
        assert source.decode_size == (64, 48)
        frames = source.read_frames([1, 2])
    assert frames.shape == (2, 48, 64, 3)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", ["index", "bframes"])
def test_key_frame_indices_follow_the_encoder_gop(videos: dict[str, Path], decoder: str, name: str) -> None:
    with VideoSource(videos[name], frame_size=16, decoder=decoder) as source:
        assert source.key_frame_indices() == [0, 10, 20]


# decord 0.6.0 cannot output 48 or 24 px wide frames, so those widths are widened by 2 px.
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(("name", "decode_size"), [("wide", (50, 24)), ("tall", (26, 48))])
def test_resize_keeps_aspect_and_crops_the_centre(videos: dict[str, Path], name: str,
                                                  decode_size: tuple[int, int], decoder: str) -> None:
    with VideoSource(videos[name], frame_size=24, decoder=decoder) as source:
        assert source.decode_size == decode_size
        frames = source.read_frames([0, 5]).astype(int)
    assert frames.shape == (2, 24, 24, 3)
    # The centre crop is exactly the green middle half: no red band survives (edges blur a little).
    inner = frames[:, 2:-2, 2:-2]
    assert inner[..., 1].min() > 180 and inner[..., 0].max() < 90


# 16 px is a width decord cannot output: a fitted frame narrower than S is narrowed to 14 px instead.
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(("name", "decode_size"), [("wide", (32, 16)), ("tall", (14, 32))])
def test_fit_keeps_the_whole_frame_and_pads_with_black(videos: dict[str, Path], name: str,
                                                       decode_size: tuple[int, int], decoder: str) -> None:
    with VideoSource(videos[name], frame_size=32, resize="fit", decoder=decoder) as source:
        assert source.decode_size == decode_size
        frames = source.read_frames([0]).astype(int)
    assert frames.shape == (1, 32, 32, 3)
    picture = frames[0, 8:24] if name == "wide" else frames[0, :, 9:23]
    # Both red quarters and the green half survive; the padding (8 px each side) is black.
    assert picture[..., 0].max() > 200 and picture[..., 1].max() > 200
    padding = np.concatenate([frames[0, :8], frames[0, 24:]]) if name == "wide" else np.concatenate(
        [frames[0, :, :9], frames[0, :, 23:]], axis=1)
    assert padding.max() == 0


@pytest.mark.parametrize("decoder", DECODERS)
def test_fit_every_small_frame_size_decodes(videos: dict[str, Path], decoder: str) -> None:
    # Fitting a wide input makes the decode width S, so this also walks decord through widths 8…64.
    for size in range(8, 65):
        with VideoSource(videos["wide"], frame_size=size, resize="fit", decoder=decoder) as source:
            assert source.read_frames([0]).shape == (1, size, size, 3), size


def test_unknown_resize_mode_or_decoder_is_an_error(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="resize"):
        VideoSource(videos["wide"], frame_size=32, resize="stretch")
    with pytest.raises(ValueError, match="decoder"):
        VideoSource(videos["wide"], frame_size=32, decoder="ffmpeg")


def test_fitted_size_long_side_is_s_short_side_even() -> None:
    assert fitted_size(64, 48, 24) == (24, 18)
    assert fitted_size(48, 64, 24) == (18, 24)
    assert fitted_size(1920, 1080, 64) == (64, 36)
    assert fitted_size(10000, 1, 64) == (64, 2)
    assert fitted_size(100, 100, 33) == (33, 33)
    with pytest.raises(ValueError):
        fitted_size(0, 10, 8)


def test_to_square_crops_long_sides_and_pads_short_ones() -> None:
    frames = np.arange(2 * 3 * 6 * 3, dtype=np.uint8).reshape(2, 3, 6, 3)
    square = to_square(frames, 4)
    assert square.shape == (2, 4, 4, 3) and square.flags.c_contiguous
    np.testing.assert_array_equal(square[:, 3], 0)  # an odd margin of one row: padded below
    np.testing.assert_array_equal(square[:, :3], frames[:, :, 1:5])  # the middle 4 columns


@pytest.mark.parametrize("decoder", DECODERS)
def test_every_small_frame_size_decodes(videos: dict[str, Path], decoder: str) -> None:
    # Portrait input: the decode width equals S, so this walks decord through every width 8…100.
    for size in range(8, 101):
        with VideoSource(videos["tall"], frame_size=size, decoder=decoder) as source:
            assert source.read_frames([0]).shape == (1, size, size, 3), size


def test_reduced_size_short_side_even_long_side() -> None:
    assert reduced_size(64, 48, 24) == (32, 24)
    assert reduced_size(48, 64, 24) == (24, 32)
    assert reduced_size(201, 141, 224) == (320, 224)
    assert reduced_size(100, 100, 32) == (32, 32)
    assert reduced_size(64, 48, 25) == (34, 25)  # odd S: the short side is S, the long side even
    assert reduced_size(1920, 1080, 224) == (398, 224)
    with pytest.raises(ValueError):
        reduced_size(0, 48, 24)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("zero", "empty file (0 bytes)"),
        ("text", "not a video file"),
        ("truncated", "truncated or corrupt video"),
        ("truncated_faststart", "truncated or corrupt video"),
        ("audio", "not a video file: cannot find a video stream"),
        ("missing", "file not found"),
    ],
)
def test_unreadable_files_raise_one_line_decode_errors(videos: dict[str, Path], name: str, expected: str) -> None:
    for attempt in (lambda: probe_video(str(videos[name])), lambda: VideoSource(videos[name], 24),
                    lambda: VideoSource(videos[name], 24, decoder="pyav")):
        with pytest.raises(DecodeError) as caught:
            attempt()
        message = str(caught.value)
        assert expected in message
        assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize("decoder", DECODERS)
def test_resolution_guard_fails_before_decoding(videos: dict[str, Path], decoder: str) -> None:
    with pytest.raises(DecodeError, match=r"resolution 64x48 exceeds the limit"):
        VideoSource(videos["index"], 24, max_pixels=64 * 48 - 1, decoder=decoder)


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_edge_cases(videos: dict[str, Path], decoder: str) -> None:
    source = VideoSource(videos["index"], frame_size=16, decoder=decoder)
    assert source.read_frames([]).shape == (0, 16, 16, 3)
    with pytest.raises(ValueError, match=r"\[0, 29\]"):
        source.read_frames([30])
    with pytest.raises(ValueError):
        source.read_frames([-1])
    source.close()
    with pytest.raises(RuntimeError, match="closed"):
        source.read_frames([0])


def test_invalid_frame_size_is_a_value_error(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="frame_size"):
        VideoSource(videos["index"], frame_size=0)


# ---------------------------------------------------------------------------- the PyAV decoder


def noise_frames(width: int = 64, height: int = 48, count: int = N_FRAMES) -> list[np.ndarray]:
    """Frames of fine random texture, so that the scalers of the two decoders have something to disagree on."""
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("resize", ["crop", "fit"])
def test_both_decoders_give_the_same_info_keyframes_and_frames(tmp_path: Path, resize: str) -> None:
    path = write_mp4(tmp_path / "noise.mp4", noise_frames(96, 64), preset="medium")
    wanted = [0, 1, 2, 7, 10, 11, 12, 19, 29]
    with VideoSource(path, 40, resize=resize) as exact, VideoSource(path, 40, resize=resize, decoder="pyav") as fast:
        assert (exact.decoder, fast.decoder) == ("decord", "pyav")
        assert fast.info == exact.info and fast.decode_size == exact.decode_size
        assert fast.key_frame_indices() == exact.key_frame_indices()  # x264 adds scene-cut keyframes to noise
        assert len(exact.key_frame_indices()) >= 3
        a, b = exact.read_frames(wanted).astype(int), fast.read_frames(wanted).astype(int)
    assert a.shape == b.shape == (len(wanted), 40, 40, 3)
    # The same frames: each PyAV frame is nearest to decord's frame of the same index (distinct noise frames
    # differ by ~25 levels on average), and both scale bilinearly, so pixels differ only by rounding.
    distances = np.abs(b[:, None] - a[None]).mean(axis=(2, 3, 4))
    assert list(distances.argmin(axis=1)) == list(range(len(wanted)))
    assert np.abs(a - b).mean() < 5


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "ts", "flv"])
def test_pyav_finds_every_frame_by_timestamp_after_b_frames(tmp_path: Path, suffix: str) -> None:
    # MPEG-TS seeks by decode timestamp, the others by presentation timestamp: both must land on the keyframe.
    path = write_mp4(tmp_path / f"bframes.{suffix}", index_frames(), preset="medium")
    with VideoSource(path, 16, decoder="pyav") as source:
        assert source.key_frame_indices() == [0, 10, 20]
        in_one_read = grey_level(source.read_frames(range(N_FRAMES)))
        one_by_one = [grey_level(source.read_frames([i]))[0] for i in reversed(range(N_FRAMES))][::-1]
        assert source.decoder == "pyav"
    np.testing.assert_allclose(in_one_read, 8 * np.arange(N_FRAMES), atol=4)
    np.testing.assert_allclose(one_by_one, 8 * np.arange(N_FRAMES), atol=4)


def test_pyav_keyframes_of_an_open_gop_stream_are_its_i_frames(videos: dict[str, Path]) -> None:
    with VideoSource(videos["open_gop"], 16, decoder="pyav") as source:
        # decord reports file-order packet counts here (0, 9, 21): the frames shown just before each I-frame.
        assert source.key_frame_indices() == [0, 12, 24]
        for key in source.key_frame_indices():
            run = list(range(key, key + 4))
            np.testing.assert_allclose(grey_level(source.read_frames(run)), [8 * i for i in run], atol=4)
        assert source.decoder == "pyav"


def test_pyav_stops_decoding_at_the_last_wanted_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_mp4(tmp_path / "long_gop.mp4", index_frames() * 2, keyint=30, preset="medium")
    fed: list[int] = []
    packets_from = decode._PyAVFrames._packets_from

    def counting(self: decode._PyAVFrames, key: int):  # type: ignore[no-untyped-def]
        for packet in packets_from(self, key):
            fed.append(packet.pts)
            yield packet

    monkeypatch.setattr(decode._PyAVFrames, "_packets_from", counting)
    with VideoSource(path, 16, decoder="pyav") as source:
        assert source.key_frame_indices() == [0, 30]
        source.read_frames([30])
        assert len(fed) == 1  # the keyframe alone: one packet, no reordering delay
        fed.clear()
        source.read_frames(range(30, 38))
        # 8 frames need their own packets and the reference frames they point to, not the rest of the GOP.
        assert 8 <= len(fed) <= 11


def sliding_texture_frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """A random texture sliding one pixel a frame: x264 codes it with motion, P-frames and B-frames."""
    texture = np.random.default_rng(5).integers(0, 256, (height, 2 * width, 3), dtype=np.uint8)
    return [np.ascontiguousarray(texture[:, i % width:i % width + width]) for i in range(count)]


def test_pyav_skips_unwanted_frames_nothing_refers_to_and_keeps_the_pixels(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "sliding.mp4", sliding_texture_frames(60), keyint=30, preset="medium")
    wanted = [3, 10, 17, 24, 33, 40, 47, 55]  # spread over both GOPs, as uniform sampling reads them
    with VideoSource(path, 32, decoder="pyav") as source:
        every = source.read_frames(range(60))
        assert source.frames_decoded == 60  # every frame is wanted: none skipped
        sparse = source.read_frames(wanted)
        decoded_for_sparse = source.frames_decoded - 60
    np.testing.assert_array_equal(sparse, every[wanted])  # bit-exact: skipped frames are never references
    # Both GOPs run to their last wanted frame (frames 0-55); the B-frames nothing refers to are skipped.
    assert len(wanted) <= decoded_for_sparse < 50


def test_decord_does_not_count_decoded_frames(videos: dict[str, Path]) -> None:
    with VideoSource(videos["index"], 16, decoder="decord") as source:
        source.read_frames([3])
        assert source.frames_decoded is None


def test_pyav_hands_files_without_usable_timestamps_to_decord(tmp_path: Path) -> None:
    # AVI stores no presentation timestamps: FFmpeg numbers packets in file order, which B-frames reorder.
    path = write_mp4(tmp_path / "bframes.avi", index_frames(), preset="medium")
    with VideoSource(path, 16, decoder="pyav") as source:
        assert source.decoder == "pyav"  # the packet index itself looks fine
        levels = grey_level(source.read_frames(range(12)))
        assert source.decoder == "decord"  # decoded frames came out of timestamp order
        np.testing.assert_allclose(levels, 8 * np.arange(12), atol=4)
    with pytest.raises(DecodeError, match="stream without timestamps"):  # raw H.264: no timestamps at all
        VideoSource(write_mp4(tmp_path / "raw.h264", index_frames()), 16, decoder="pyav")


def test_pyav_decode_errors_are_decode_errors(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "noise.mp4", noise_frames(), preset="medium", faststart=True)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for position in rng.integers(len(data) // 4, len(data), 400):
        data[position] = rng.integers(0, 256)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="truncated or corrupt video") as caught:
        with VideoSource(corrupt, 16, decoder="pyav") as source:
            source.read_frames(range(N_FRAMES))
    assert "\n" not in str(caught.value)


def test_pyav_hands_a_file_it_cannot_seek_in_to_decord(videos: dict[str, Path]) -> None:
    class NoSeek:
        def __init__(self, container: object) -> None:
            self._container = container

        def seek(self, *args: object, **kwargs: object) -> None:
            raise av.error.FFmpegError(38, "Function not implemented")

        def __getattr__(self, name: str) -> object:
            return getattr(self._container, name)

    with VideoSource(videos["bframes"], 16, decoder="pyav") as source:
        source._frames._container = NoSeek(source._frames._container)  # type: ignore[union-attr]
        np.testing.assert_allclose(grey_level(source.read_frames([12, 13])), [96, 104], atol=4)
        assert source.decoder == "decord"
