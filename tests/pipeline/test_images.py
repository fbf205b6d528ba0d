"""Tests for pipeline/images.py: still images as one clip, sized like video frames, failures as DecodeError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageFilter, features

from pipeline.decode import DecodeError, reduced_size
from pipeline.images import decode_media_clips, image_clips, read_image_frame
from pipeline.sampling import ClipPlan, SamplingConfig, decode_clips

S = 32
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
EXIF_ORIENTATION = 0x0112


def save(image: Image.Image, path: Path, **params) -> Path:
    image.save(path, **params)
    return path


def centre_band(width: int, height: int, margin: float = 0.2) -> Image.Image:
    """Green in the middle of the long side, red in the outer ``margin`` on both ends of it."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = RED
    if width >= height:
        cut = int(width * margin)
        pixels[:, cut:width - cut] = GREEN
    else:
        cut = int(height * margin)
        pixels[cut:height - cut, :] = GREEN
    return Image.fromarray(pixels)


def assert_close_to(frame: np.ndarray, colour: tuple[int, int, int], tolerance: int = 8) -> None:
    difference = np.abs(frame.astype(np.int16) - np.array(colour, np.int16))
    assert difference.max() <= tolerance, f"max difference {difference.max()} from {colour}"


def write_tiny_mp4(path: Path, seconds: float = 1.0, fps: int = 10) -> Path:
    """A real H.264 mp4 (64x48) written with PyAV (same as tests/pipeline/test_catalog.py)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(int(seconds * fps)):
            pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def png_with_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width``×``height`` but holds no pixel data (a decompression-bomb probe)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- the clip


def test_image_clips_is_one_clip_of_k_identical_frames(tmp_path):
    path = save(Image.new("RGB", (40, 30), (10, 20, 30)), tmp_path / "flat.png")
    clips = image_clips(path, SamplingConfig(frames_per_clip=5), S)

    assert len(clips) == 1
    plan, frames = clips[0]
    assert plan == ClipPlan(clip_idx=0, t_start=0.0, t_end=0.0, frame_indices=(0, 0, 0, 0, 0))
    assert frames.shape == (5, S, S, 3) and frames.dtype == np.uint8
    assert frames.flags.c_contiguous and frames.flags.writeable
    assert (frames == np.array((10, 20, 30), np.uint8)).all()


@pytest.mark.parametrize("size", [(200, 100), (100, 200)], ids=["landscape", "portrait"])
def test_centre_crop_keeps_the_middle_of_the_long_side(tmp_path, size):
    path = save(centre_band(*size), tmp_path / "band.png")
    assert_close_to(read_image_frame(path, S), GREEN)


@pytest.mark.parametrize("size", [(200, 100), (100, 200), (37, 91), (20, 10)])
def test_resize_and_crop_follow_the_video_convention(tmp_path, size):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))
    path = save(image, tmp_path / "noise.png")

    width, height = reduced_size(*size, S)  # VideoSource: scale the short side to S, then centre square
    top, left = (height - S) // 2, (width - S) // 2
    expected = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))[top:top + S, left:left + S]

    frame = read_image_frame(path, S)
    assert frame.shape == (S, S, 3)
    assert np.abs(frame.astype(np.int16) - expected).max() <= 2


@pytest.mark.parametrize("size", [(200, 100), (100, 200)], ids=["landscape", "portrait"])
def test_fit_keeps_the_whole_image_and_pads_with_black(tmp_path, size):
    path = save(centre_band(*size), tmp_path / "band.png")
    frame = read_image_frame(path, S, resize="fit")
    assert frame.shape == (S, S, 3)
    picture, padding = (frame[8:24], frame[:8]) if size[0] > size[1] else (frame[:, 8:24], frame[:, :8])
    assert_close_to(picture[:, :2] if size[0] > size[1] else picture[:2], RED, tolerance=40)
    assert_close_to(picture[6:10, 14:18] if size[0] > size[1] else picture[14:18, 6:10], GREEN)
    assert padding.max() == 0


def test_extreme_aspect_ratio_does_not_build_a_huge_intermediate(tmp_path):
    path = save(Image.new("RGB", (1, 20000), BLUE), tmp_path / "strip.png")
    assert_close_to(read_image_frame(path, 224), BLUE, tolerance=0)


# ---------------------------------------------------------------- modes and formats


def test_rgba_transparent_pixels_become_white(tmp_path):
    pixels = np.zeros((40, 40, 4), np.uint8)  # transparent black everywhere …
    pixels[:, :20] = (0, 0, 255, 255)  # … except an opaque blue left half
    path = save(Image.fromarray(pixels, mode="RGBA"), tmp_path / "alpha.png")
    frame = read_image_frame(path, S)
    assert_close_to(frame[:, :12], BLUE)
    assert_close_to(frame[:, -12:], WHITE)


def test_greyscale_png_is_grey_rgb(tmp_path):
    path = save(Image.new("L", (40, 40), 100), tmp_path / "grey.png")
    frame = read_image_frame(path, S)
    assert (frame == 100).all()


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    path = save(Image.fromarray(np.full((40, 40), 30000, np.uint16)), tmp_path / "deep.png")
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")  # the mode PIL's convert("RGB") would clip to 255
    frame = read_image_frame(path, S)
    assert (frame == round(30000 * 255 / 65535)).all()


def test_palette_png(tmp_path):
    image = Image.new("P", (40, 40), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    frame = read_image_frame(save(image, tmp_path / "palette.png"), S)
    assert (frame == np.array((200, 100, 50), np.uint8)).all()


def test_palette_png_with_transparent_index_becomes_white(tmp_path):
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    frame = read_image_frame(save(image, tmp_path / "palette.png", transparency=0), S)
    assert (frame == 255).all()


def test_one_bit_bmp(tmp_path):
    frame = read_image_frame(save(Image.new("1", (40, 40), 1), tmp_path / "mono.bmp"), S)
    assert (frame == 255).all()


def test_jpeg(tmp_path):
    path = save(centre_band(200, 100), tmp_path / "band.jpg", quality=95)
    assert_close_to(read_image_frame(path, S), GREEN, tolerance=12)


def test_large_jpeg_decoded_at_reduced_scale_matches_full_decode(tmp_path):
    path = save(centre_band(2000, 1000), tmp_path / "big.jpg", quality=95)
    frame = read_image_frame(path, S)  # uses JPEG draft (1/8 scale) internally
    assert_close_to(frame, GREEN, tolerance=12)


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape: top half red, bottom half blue. Orientation 6 means "rotate 90° clockwise to
    # display": upright it is portrait with blue on the left and red on the right.
    pixels = np.zeros((60, 120, 3), np.uint8)
    pixels[:30], pixels[30:] = RED, BLUE
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    path = save(Image.fromarray(pixels), tmp_path / "rotated.jpg", quality=95, exif=exif)

    frame = read_image_frame(path, S)
    assert_close_to(frame[:, :10], BLUE, tolerance=12)
    assert_close_to(frame[:, -10:], RED, tolerance=12)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp(tmp_path):
    path = save(centre_band(100, 200), tmp_path / "band.webp", lossless=True)
    assert_close_to(read_image_frame(path, S), GREEN)


# ---------------------------------------------------------------- failures


def expect_decode_error(path: Path, fragment: str, **kwargs) -> str:
    with pytest.raises(DecodeError) as caught:
        image_clips(path, SamplingConfig(), S, **kwargs)
    message = str(caught.value)
    assert fragment in message and "\n" not in message
    return message


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    expect_decode_error(path, "empty file")


def test_missing_file(tmp_path):
    expect_decode_error(tmp_path / "nowhere.png", "file not found")


def test_not_an_image(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expect_decode_error(path, "not an image file")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image(tmp_path, suffix):
    rng = np.random.default_rng(0)
    whole = save(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), tmp_path / f"whole{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    expect_decode_error(cut, "truncated or corrupt image")


def test_corrupt_png_data(tmp_path):
    whole = save(Image.new("RGB", (64, 64), RED), tmp_path / "whole.png")
    data = bytearray(whole.read_bytes())
    data[60:80] = b"\xff" * 20  # inside the IDAT chunk: checksum and zlib stream broken
    broken = tmp_path / "broken.png"
    broken.write_bytes(bytes(data))
    expect_decode_error(broken, "corrupt image")


def test_max_pixels_limit(tmp_path):
    path = save(Image.new("RGB", (40, 30)), tmp_path / "small.png")
    expect_decode_error(path, "exceeds the limit of 1,000 pixels", max_pixels=1000)


def test_bomb_header_rejected_before_decoding(tmp_path):
    # 6000×6000 = 36 M pixels: over the default limit, under Pillow's own guard.
    expect_decode_error(png_with_header_only(tmp_path / "bomb.png", 6000, 6000), "exceeds the limit")
    # 60000×60000: Pillow's process-wide guard refuses it while reading the header.
    expect_decode_error(png_with_header_only(tmp_path / "huge.png", 60000, 60000), "decompression-bomb")


# ---------------------------------------------------------------- dispatch


def test_decode_media_clips_sends_images_to_image_clips(tmp_path):
    path = save(Image.new("RGB", (40, 30), BLUE), tmp_path / "UPPER.JPG")
    clips = list(decode_media_clips(path, SamplingConfig(frames_per_clip=3), S))
    assert [plan for plan, _ in clips] == [ClipPlan(0, 0.0, 0.0, (0, 0, 0))]
    assert clips[0][1].shape == (3, S, S, 3)


def test_decode_media_clips_sends_videos_to_decode_clips(tmp_path):
    path = write_tiny_mp4(tmp_path / "tiny.mp4")
    config = SamplingConfig(frames_per_clip=4, clip_seconds=0.5)
    got = list(decode_media_clips(path, config, S))
    expected = list(decode_clips(path, config, S))
    assert len(got) == len(expected) == 2
    for (plan, frames), (expected_plan, expected_frames) in zip(got, expected):
        assert plan == expected_plan
        np.testing.assert_array_equal(frames, expected_frames)


def test_decode_media_clips_raises_decode_error_for_both_kinds(tmp_path):
    for name in ("bad.png", "bad.mp4"):
        path = tmp_path / name
        path.write_bytes(b"not media at all" * 8)
        with pytest.raises(DecodeError):
            list(decode_media_clips(path, SamplingConfig(), S))
