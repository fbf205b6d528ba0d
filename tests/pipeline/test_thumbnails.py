"""Per-clip thumbnails (pipeline/thumbnails.py): made from decoded frames, packed into versions, read back."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from hashing.bits import codes_to_arrow
from pipeline.codes import code_schema
from pipeline.features import clip_feature_dir, clip_feature_schema, embedding_array, load_clip_features
from pipeline.publish import CollectionCodes, publish_index, read_current_manifest, verify_version
from pipeline.sampling import SamplingConfig
from pipeline.search import PublishedIndex
from pipeline.shards import ShardRunWriter
from pipeline.store import StoreLayout
from pipeline.thumbnails import (
    NO_THUMBNAIL,
    THUMBNAIL_PX,
    clip_thumbnail,
    feature_thumbnails,
    version_thumbnails,
)


def smooth_clip(seed: int, frames: int = 4, size: int = 224) -> np.ndarray:
    """Frames like a real video's: a smooth gradient with a coloured square (noise would not compress)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    clip = np.zeros((frames, size, size, 3), np.uint8)
    for f in range(frames):
        clip[f, ..., 0] = ramp[None, :]
        clip[f, ..., 1] = ramp[:, None]
        x, y = rng.integers(0, size - 60, 2)
        clip[f, y:y + 60, x:x + 60] = rng.integers(0, 256, 3)
    return clip


def test_thumbnail_is_the_middle_frame_as_a_small_jpeg():
    clip = smooth_clip(0)
    data = clip_thumbnail(clip)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (THUMBNAIL_PX, THUMBNAIL_PX)
        pixels = np.asarray(image.convert("RGB").resize((224, 224)), np.float32)
    assert np.abs(pixels - clip[2]).mean() < np.abs(pixels - clip[0]).mean()  # frame 2 of 4, not frame 0
    assert len(data) < 8_000


def test_thumbnail_keeps_the_aspect_of_padded_frames():
    data = clip_thumbnail(np.zeros((2, 96, 224, 3), np.uint8))
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (THUMBNAIL_PX, 55)


def write_features(layout, collection, sampling, videos, with_thumbnails=True):
    rows = [(video, clip) for video in videos for clip in range(2)]
    columns = {
        "video_id": [v for v, _ in rows], "fingerprint": [f"fp-{v}" for v, _ in rows],
        "clip_idx": pa.array([c for _, c in rows], pa.int32()), "t_start": [4.0 * c for _, c in rows],
        "t_end": [4.0 * c + 4 for _, c in rows], "embedding": embedding_array(np.ones((len(rows), 8))),
    }
    if with_thumbnails:
        columns["thumbnail"] = pa.array([clip_thumbnail(smooth_clip(i)) for i in range(len(rows))], pa.binary())
    writer = ShardRunWriter(clip_feature_dir(layout, "enc", collection, sampling), f"key-{with_thumbnails}")
    writer.write(pa.table(columns, schema=clip_feature_schema(8, thumbnails=with_thumbnails)))
    writer.commit({"kind": "clip_features", "embed_dim": 8, "videos": [[v, f"fp-{v}"] for v in videos]})


def test_feature_readers_skip_the_thumbnail_column_and_old_parts_have_none(tmp_path):
    layout, sampling = StoreLayout(tmp_path), SamplingConfig()
    write_features(layout, "col", sampling, ["a"], with_thumbnails=True)
    write_features(layout, "col", sampling, ["b"], with_thumbnails=False)
    feature_dir = clip_feature_dir(layout, "enc", "col", sampling)
    table = load_clip_features(feature_dir, {"a": "fp-a", "b": "fp-b"})
    assert "thumbnail" not in table.column_names and table.num_rows == 4
    found = {(video, clip) for video, clip, _ in feature_thumbnails(feature_dir, {"a": "fp-a", "b": "fp-b"})}
    assert found == {("a", 0), ("a", 1)}
    assert list(feature_thumbnails(feature_dir, {"a": "another-fingerprint"})) == []


def codes(videos: list[str]) -> pa.Table:
    rows = [(v, c) for v in videos for c in range(2)]
    return pa.table({
        "video_id": [v for v, _ in rows], "clip_idx": pa.array([c for _, c in rows], pa.int32()),
        "t_start": [4.0 * c for _, c in rows], "t_end": [4.0 * c + 4 for _, c in rows],
        "code": codes_to_arrow(np.arange(2 * len(rows), dtype=np.uint8).reshape(-1, 2)),
        "uri": [f"{v}.mp4" for v, _ in rows], "caption": [None] * len(rows),
        "labels": pa.nulls(len(rows), pa.list_(pa.string())),
    }, schema=code_schema(16).append(pa.field("uri", pa.string())).append(pa.field("caption", pa.string()))
        .append(pa.field("labels", pa.list_(pa.string()))))


def test_publish_packs_the_version_clips_thumbnails_and_carries_them_forward(tmp_path):
    layout = StoreLayout(tmp_path)
    thumbs = {("a", 0): b"\xff\xd8a0", ("a", 1): b"\xff\xd8a1", ("b", 0): b"\xff\xd8b0", ("zz", 0): b"unused"}
    publish_index(layout, "idx", model_id="m", code_bits=16, metrics={}, model_info={},
                  collections=[CollectionCodes("one", "run-1", codes(["a", "b"]))],
                  thumbnails={"one": [(v, c, data) for (v, c), data in thumbs.items()]}, shard_rows=3)
    index = PublishedIndex.open(layout, "idx")
    assert index.thumbnail("a", 1) == b"\xff\xd8a1" and index.thumbnail("b", 0) == b"\xff\xd8b0"
    assert index.thumbnail("b", 1) is None  # no thumbnail was made for it
    assert index.thumbnail("zz", 0) is None  # not a clip of the version
    assert index.manifest["thumbnails"]["count"] == 3
    assert all(-1 <= o for t in index.ids for o in t["thumb_offset"].to_pylist())
    assert NO_THUMBNAIL in [o for t in index.ids for o in t["thumb_offset"].to_pylist()]

    version, version_dir, manifest = read_current_manifest(layout, "idx")
    carried = list(version_thumbnails(version_dir, manifest, "one"))
    publish_index(layout, "idx", model_id="m", code_bits=16, metrics={}, model_info={},
                  collections=[CollectionCodes("one", "run-1", codes(["a", "b"])),
                               CollectionCodes("two", "run-2", codes(["c"]))],
                  thumbnails={"one": carried, "two": [("c", 0, b"\xff\xd8c0")]})
    index = PublishedIndex.open(layout, "idx")
    assert index.version == 2
    assert index.thumbnail("a", 0) == b"\xff\xd8a0" and index.thumbnail("c", 0) == b"\xff\xd8c0"


def test_verify_checks_the_thumbnail_pack(tmp_path):
    layout = StoreLayout(tmp_path)
    publish_index(layout, "idx", model_id="m", code_bits=16, metrics={}, model_info={},
                  collections=[CollectionCodes("one", "run-1", codes(["a"]))], thumbnails={"one": [("a", 0, b"jpeg")]})
    _, version_dir, manifest = read_current_manifest(layout, "idx")
    assert verify_version(version_dir, manifest) == []
    (version_dir / "thumbnails.bin").write_bytes(b"JPEG")
    assert verify_version(version_dir, manifest) == [f"checksum mismatch {version_dir / 'thumbnails.bin'}"]


def test_a_version_published_without_thumbnails_has_none(tmp_path):
    layout = StoreLayout(tmp_path)
    publish_index(layout, "idx", model_id="m", code_bits=16, metrics={}, model_info={},
                  collections=[CollectionCodes("one", "run-1", codes(["a"]))])
    index = PublishedIndex.open(layout, "idx")
    assert index.manifest["thumbnails"] is None and index.thumbnail("a", 0) is None
