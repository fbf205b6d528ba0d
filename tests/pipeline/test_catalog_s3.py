"""Cataloging media that live only in an S3-compatible server (SeaweedFS on the loopback): listing a prefix, a
glob and a manifest object, fingerprints from object metadata, probing a worker-local copy, failures as rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hashing.files import as_path
from media_files import write_tiny_mp4
from pipeline.catalog import MediaEntry, catalog_row, discover
from pipeline.images import decode_media_clips
from pipeline.decode import DecodeError
from pipeline.sampling import SamplingConfig


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory) -> bytes:
    return write_tiny_mp4(tmp_path_factory.mktemp("s3-media") / "a.mp4", seconds=1.0).read_bytes()


@pytest.fixture
def media(s3_prefix, mp4_bytes) -> str:
    root = as_path(f"{s3_prefix}/media")
    for key in ("a.mp4", "sub/b.mp4", "sub/.hidden.mp4", "notes.txt"):
        (root / key).write_bytes(mp4_bytes if key.endswith(".mp4") else b"text")
    with (root / "manifest.parquet").open("wb") as handle:
        pq.write_table(pa.table({"uri": ["a.mp4", "sub/b.mp4"], "caption": ["first", "second"]}), handle)
    return str(root)


def test_a_prefix_lists_its_media_objects_with_the_root_manifest(media):
    entries, description = discover(media + "/")
    assert [(e.uri, e.path, e.caption) for e in entries] == [
        ("a.mp4", f"{media}/a.mp4", "first"), ("sub/b.mp4", f"{media}/sub/b.mp4", "second")]
    assert "object prefix" in description and "manifest.parquet" in description


def test_a_glob_a_manifest_object_and_a_single_object(media):
    assert [e.uri for e in discover(f"{media}/sub/*.mp4")[0]] == ["b.mp4"]
    assert [(e.uri, e.path) for e in discover(f"{media}/manifest.parquet")[0]] == [
        ("a.mp4", f"{media}/a.mp4"), ("sub/b.mp4", f"{media}/sub/b.mp4")]
    assert [e.path for e in discover(f"{media}/a.mp4")[0]] == [f"{media}/a.mp4"]


def test_a_missing_prefix_is_a_clear_error(s3_prefix):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(f"{s3_prefix}/nothing-here/")


def test_catalog_row_of_an_object_probes_a_local_copy_and_fingerprints_by_etag(media, mp4_bytes):
    row = catalog_row(MediaEntry(uri="a.mp4", path=f"{media}/a.mp4"), "col", None)
    assert row["status"] == "ok" and row["frame_count"] == 10 and (row["width"], row["height"]) == (64, 48)
    size, etag = row["fingerprint"].split("-")
    assert int(size) == len(mp4_bytes) == row["size_bytes"] and len(etag) >= 16
    # Unchanged: the probe is reused without reading the object; rewritten: a new fingerprint.
    assert catalog_row(MediaEntry(uri="a.mp4", path=f"{media}/a.mp4"), "col", row)["fingerprint"] == row["fingerprint"]
    (as_path(media) / "a.mp4").write_bytes(mp4_bytes + b"\0")
    assert catalog_row(MediaEntry(uri="a.mp4", path=f"{media}/a.mp4"), "col", row)["fingerprint"] != row["fingerprint"]


def test_missing_empty_and_non_video_objects_are_failed_rows(media):
    (as_path(media) / "empty.mp4").write_bytes(b"")
    (as_path(media) / "fake.mp4").write_bytes(b"not a video at all" * 10)
    errors = {name: catalog_row(MediaEntry(uri=name, path=f"{media}/{name}"), "col", None)["error"]
              for name in ("gone.mp4", "empty.mp4", "fake.mp4")}
    assert errors["gone.mp4"].startswith("missing object")
    assert errors["empty.mp4"] == "empty file (0 bytes)"
    assert errors["fake.mp4"].startswith("not a video file")


def test_decoding_an_object_yields_its_clips_and_a_missing_object_is_a_decode_error(media):
    clips = list(decode_media_clips(f"{media}/sub/b.mp4", SamplingConfig(frames_per_clip=2, clip_seconds=4.0), 32))
    assert len(clips) == 1 and clips[0][1].shape == (2, 32, 32, 3)
    with pytest.raises(DecodeError, match="object not found"):
        list(decode_media_clips(f"{media}/gone.mp4", SamplingConfig(frames_per_clip=2), 32))
