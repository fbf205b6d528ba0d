"""Still images as one-clip media: the same ``(ClipPlan, uint8[K, S, S, 3])`` shape as a decoded video.

The catalog treats jpg/png/webp/bmp files as one-frame media. ``image_clips`` turns one image into
one clip whose K frames are all that image, sized exactly as ``VideoSource`` sizes video frames (short
side scaled to S with ``decode.reduced_size``, then the centre S×S square), so the encoders need no
special case. ``decode_media_clips`` picks the image or the video path by file extension, so the
extraction stage calls one function for every catalog row.

Every problem — missing, empty, corrupt, truncated, not an image, too many pixels — is a
``DecodeError`` with one readable line, like video decoding failures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.catalog import media_kind
from pipeline.decode import (DEFAULT_MAX_PIXELS, DecodeError, Resize, check_resize, fitted_size, reduced_size,
                             scaled_size, to_square)
from pipeline.sampling import ClipPlan, SamplingConfig, decode_clips
from pipeline.store import is_uri, local_file

# Transparent pixels are composited onto white: the colour stored under alpha=0 is undefined (often
# black, sometimes garbage), and white is how viewers show such images (logos, icons, screenshots).
_ALPHA_BACKGROUND = (255, 255, 255)
# Integer greyscale modes PIL keeps at full depth; PIL's own convert() clips them to 255 instead of
# scaling, which would turn nearly every 16-bit image white.
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Downscale in two steps (integer box reduce, then the resampling filter) once the image is at least
# this many times the target: much faster on large photos and visually indistinguishable (PIL docs).
_REDUCING_GAP = 3.0


def decode_media_clips(path: str | os.PathLike[str], config: SamplingConfig,
                       frame_size: int, resize: Resize = "crop") -> Iterator[tuple[ClipPlan, np.ndarray]]:
    """Yield ``(plan, uint8[K, S, S, 3])`` per clip of an image or a video; ``DecodeError`` if unreadable.

    Images (by extension, ``catalog.media_kind``) give one clip; everything else goes to
    ``sampling.decode_clips``. A generator in both cases, so errors surface on iteration either way. An object
    (``s3://…``) is first copied to a temporary file on the machine that decodes it (decoders seek), so no node
    needs another's disk.
    """
    if is_uri(str(path)):
        try:
            with local_file(str(path)) as local:
                yield from decode_media_clips(local, config, frame_size, resize)
        except FileNotFoundError:
            raise DecodeError(f"object not found: {path}") from None
        return
    if media_kind(str(path)) == "image":
        yield from image_clips(path, config, frame_size, resize=resize)
    else:
        yield from decode_clips(path, config, frame_size, resize=resize)


def image_clips(path: str | os.PathLike[str], config: SamplingConfig, frame_size: int,
                *, resize: Resize = "crop", max_pixels: int = DEFAULT_MAX_PIXELS) -> list[tuple[ClipPlan, np.ndarray]]:
    """One clip (index 0, time 0.0–0.0) whose ``frames_per_clip`` frames are the image, uint8 [K, S, S, 3] RGB."""
    frame = read_image_frame(path, frame_size, resize=resize, max_pixels=max_pixels)
    k = config.frames_per_clip
    frames = np.ascontiguousarray(np.broadcast_to(frame, (k, *frame.shape)))
    plan = ClipPlan(clip_idx=0, t_start=0.0, t_end=0.0, frame_indices=(0,) * k)
    return [(plan, frames)]


def read_image_frame(path: str | os.PathLike[str], frame_size: int,
                     *, resize: Resize = "crop", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image as uint8 [S, S, 3] RGB: upright (EXIF), short side scaled to S and centre-cropped
    (``resize="crop"``), or long side scaled to S and padded with black (``"fit"``)."""
    if frame_size <= 0:  # checked here: inside the try below a ValueError would read as a corrupt file
        raise ValueError(f"frame_size must be a positive number of pixels, got {frame_size}")
    check_resize(resize)
    path = str(path)
    _check_file(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            # Image.open reads only the header, so this rejects a decompression bomb before any
            # pixel memory is allocated.
            if width * height > max_pixels:
                raise DecodeError(
                    f"resolution {width}x{height} exceeds the limit of {max_pixels:,} pixels "
                    "(raise max_pixels if such files are expected)"
                )
            # JPEG can decode at 1/2, 1/4 or 1/8 scale; draft keeps every side >= the size asked for,
            # and the scale is uniform, so the box fits whatever the EXIF orientation turns out to be.
            image.draft("RGB", scaled_size(width, height, frame_size, resize))
            image.load()  # decode now, so truncated data fails inside this try
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright)
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError(f"file not found: {path}") from None
    except PermissionError:
        raise DecodeError(f"permission denied: {path}") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image file: the image format was not recognised") from None
    except Image.DecompressionBombError as error:  # PIL's own, process-wide limit (Image.MAX_IMAGE_PIXELS)
        raise DecodeError(f"image rejected by Pillow's decompression-bomb guard: {_one_line(error)}") from None
    # PIL reports broken data as OSError ("image file is truncated"), SyntaxError ("broken PNG file"),
    # ValueError or EOFError depending on the format plugin.
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise DecodeError(f"truncated or corrupt image file: {_one_line(error)}") from None
    if resize == "fit":
        return _resize_and_pad(rgb, frame_size)
    return _resize_and_centre_crop(rgb, frame_size)


def _check_file(path: str) -> None:
    file = Path(path)
    if not file.exists():
        raise DecodeError(f"file not found: {path}")
    if not file.is_file():
        raise DecodeError(f"not a regular file: {path}")
    if file.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: palette, greyscale, 1-bit, CMYK, 16-bit greyscale, with or without alpha."""
    if image.mode in _HIGH_DEPTH_MODES:
        # 16-bit samples → 8 bit by scaling (65535 → 255); "I" holds 16-bit PNG data in older Pillows.
        values = np.asarray(image).astype(np.int64)
        grey = (np.clip(values, 0, 65535) * 255 + 32767) // 65535
        return Image.fromarray(grey.astype(np.uint8), mode="L").convert("RGB")
    # "A" straight alpha (RGBA, LA, PA), "a" premultiplied (RGBa, La); "transparency" for palette/tRNS.
    has_alpha = any(band in ("A", "a") for band in image.getbands()) or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _resize_and_centre_crop(image: Image.Image, frame_size: int) -> np.ndarray:
    """uint8 [S, S, 3] with the convention of ``VideoSource``: ``reduced_size``, then the centre S×S square.

    The crop window is mapped back to source coordinates and only it is resampled (``resize(box=…)``,
    which still reads the neighbouring pixels the filter needs), so a 1×10000 strip costs an S×S
    output, not a 224×2240000 intermediate.
    """
    reduced_width, reduced_height = reduced_size(image.width, image.height, frame_size)
    left, top = (reduced_width - frame_size) // 2, (reduced_height - frame_size) // 2
    scale_x, scale_y = image.width / reduced_width, image.height / reduced_height
    box = (left * scale_x, top * scale_y, (left + frame_size) * scale_x, (top + frame_size) * scale_y)
    cropped = image.resize((frame_size, frame_size), Image.Resampling.BICUBIC, box=box,
                           reducing_gap=_REDUCING_GAP)
    return np.ascontiguousarray(np.asarray(cropped)[..., :3])


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] if text else type(error).__name__


def _resize_and_pad(image: Image.Image, frame_size: int) -> np.ndarray:
    """uint8 [S, S, 3] with the convention of ``VideoSource(resize="fit")``: ``fitted_size``, then padded."""
    resized = image.resize(fitted_size(image.width, image.height, frame_size), Image.Resampling.BICUBIC,
                           reducing_gap=_REDUCING_GAP)
    return to_square(np.asarray(resized)[None], frame_size)[0]
