"""One small JPEG per clip: made while extracting, kept with the clip features, packed into each index version.

The thumbnail is the clip's middle frame as the encoder saw it (already decoded and cropped to the encoder's
frame size), scaled to ``THUMBNAIL_PX`` and JPEG-encoded: about 3–5 KB per clip (docs/serving.md). Feature
parts carry it in a ``thumbnail`` column that readers of embeddings never load (column projection). Publishing
concatenates the thumbnails of a version's clips into one ``thumbnails.bin`` and records each clip's
``thumb_offset``/``thumb_length`` in the id tables, so the service reads one thumbnail with one ranged read and
nothing about a request ever names a file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
from PIL import Image

from pipeline.features import clip_feature_dir
from pipeline.shards import committed_runs
from pipeline.store import (
    StoreLayout,
    StorePath,
    atomic_output_path,
    file_sha256,
    read_parquet,
    read_range,
)

THUMBNAIL_PX = 128
JPEG_QUALITY = 75
THUMBNAIL_COLUMN = "thumbnail"
PACK_NAME = "thumbnails.bin"
NO_THUMBNAIL = -1  # thumb_offset of a clip without a thumbnail (features extracted before thumbnails existed)

ClipThumbnail = tuple[str, int, bytes]  # video_id, clip_idx, JPEG bytes


def clip_thumbnail(frames: np.ndarray) -> bytes:
    """The JPEG thumbnail of a clip, uint8 [K, H, W, 3] frames: its middle frame, at most THUMBNAIL_PX a side."""
    image = Image.fromarray(np.ascontiguousarray(frames[len(frames) // 2]))
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def feature_thumbnails(feature_dir: StorePath, wanted: dict[str, str]) -> Iterator[ClipThumbnail]:
    """Thumbnails of the wanted (video_id → fingerprint) videos from committed feature runs, newest run first,
    read one part at a time; parts written before thumbnails existed give none."""
    remaining = dict(wanted)
    for run_dir, manifest in committed_runs(feature_dir):
        in_run = {video for video, fingerprint in manifest.get("videos", []) if remaining.get(video) == fingerprint}
        if not in_run:
            continue
        for item in manifest.get("files", []):
            try:
                table = read_parquet(run_dir / item["file"], columns=["video_id", "clip_idx", THUMBNAIL_COLUMN])
            except (KeyError, pa.ArrowInvalid):  # a part without the column
                continue
            for video, clip, thumbnail in zip(table["video_id"].to_pylist(), table["clip_idx"].to_pylist(),
                                              table[THUMBNAIL_COLUMN].to_pylist()):
                if video in in_run and thumbnail:
                    yield video, clip, thumbnail
        for video in in_run:
            remaining.pop(video)
        if not remaining:
            return


def version_thumbnails(version_dir: StorePath, manifest: dict, collection: str) -> Iterator[ClipThumbnail]:
    """Thumbnails of one collection of a published version, read back from its pack."""
    pack = manifest.get("thumbnails")
    if not pack:
        return
    for shard in manifest["shards"]:
        table = read_parquet(version_dir / shard["ids_file"])
        if "thumb_offset" not in table.column_names:
            continue
        for video, clip, owner, offset, length in zip(
                table["video_id"].to_pylist(), table["clip_idx"].to_pylist(), table["collection"].to_pylist(),
                table["thumb_offset"].to_pylist(), table["thumb_length"].to_pylist()):
            if owner == collection and offset != NO_THUMBNAIL:
                yield video, clip, read_range(version_dir / pack["file"], offset, length)


def codes_run_thumbnails(layout: StoreLayout, encoder_id: str, sampling, collection: str,
                         codes_manifest: dict) -> Iterator[ClipThumbnail]:
    """Thumbnails of the videos a codes run holds, in the state (fingerprint) that run hashed."""
    wanted = {video: fingerprint for video, fingerprint in codes_manifest.get("videos", [])}
    yield from feature_thumbnails(clip_feature_dir(layout, encoder_id, collection, sampling), wanted)


def write_thumbnail_pack(path: StorePath, sources: dict[str, Iterable[ClipThumbnail]],
                         keep: dict[str, set[tuple[str, int]]]) -> tuple[dict[tuple[str, str, int], tuple[int, int]], dict]:
    """Concatenate the thumbnails of the clips in ``keep`` (collection → {(video_id, clip_idx)}) into one file.

    Returns (collection, video_id, clip_idx) → (offset, length), and the manifest entry of the pack.
    """
    offsets: dict[tuple[str, str, int], tuple[int, int]] = {}
    position = 0
    with atomic_output_path(path) as temporary, open(temporary, "wb") as out:
        for collection, thumbnails in sources.items():
            wanted = keep.get(collection, set())
            for video, clip, data in thumbnails:
                key = (collection, video, int(clip))
                if (video, int(clip)) not in wanted or key in offsets:
                    continue
                out.write(data)
                offsets[key] = (position, len(data))
                position += len(data)
    entry = {"file": PACK_NAME, "bytes": position, "count": len(offsets), "sha256": file_sha256(path)}
    return offsets, entry


def thumbnail_columns(table: pa.Table, offsets: dict[tuple[str, str, int], tuple[int, int]]) -> pa.Table:
    """``table`` (with a ``collection`` column) plus each row's thumb_offset and thumb_length."""
    found = [offsets.get((c, v, int(i)), (NO_THUMBNAIL, 0)) for c, v, i in zip(
        table["collection"].to_pylist(), table["video_id"].to_pylist(), table["clip_idx"].to_pylist())]
    return (table.append_column("thumb_offset", pa.array([f[0] for f in found], pa.int64()))
            .append_column("thumb_length", pa.array([f[1] for f in found], pa.int32())))
