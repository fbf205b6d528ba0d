"""Tests for pipeline/catalog.py: discovery, identity, fingerprints, rows, catalog versions."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import pipeline.catalog as catalog
from pipeline.catalog import (
    CATALOG_SCHEMA,
    MediaEntry,
    catalog_row,
    catalog_summary,
    discover,
    fingerprint,
    previous_rows_by_id,
    read_catalog,
    rows_to_table,
    video_id,
    write_catalog,
)
from pipeline.store import StoreLayout
from media_files import write_tiny_mp4


@pytest.fixture(scope="module")
def good_mp4_bytes(tmp_path_factory) -> bytes:
    path = write_tiny_mp4(tmp_path_factory.mktemp("video") / "good.mp4", seconds=1.0)
    return path.read_bytes()


@pytest.fixture
def good_mp4(tmp_path, good_mp4_bytes) -> Path:
    path = tmp_path / "good.mp4"
    path.write_bytes(good_mp4_bytes)
    return path


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def uris(entries: list[MediaEntry]) -> list[str]:
    return [entry.uri for entry in entries]


# ---------------------------------------------------------------- discover


def test_discover_directory_recursive_sorted_skips_hidden_and_non_media(tmp_path):
    root = tmp_path / "col"
    touch(root / "b.mp4")
    touch(root / "a" / "z.MKV")
    touch(root / "a" / "photo.jpg")
    touch(root / "notes.txt")
    touch(root / ".hidden.mp4")
    touch(root / ".cache" / "x.mp4")
    touch(root / "sub" / ".tmp-b.mp4.123.abc")

    entries, description = discover(str(root))

    assert uris(entries) == ["a/photo.jpg", "a/z.MKV", "b.mp4"]
    assert all(Path(entry.path).is_absolute() for entry in entries)
    assert entries[2].path == str(root / "b.mp4")
    assert "directory" in description


def test_discover_odd_file_names(tmp_path):
    root = tmp_path / "col [2020]"
    names = ["with space.mp4", "ünïcødé 视频.mov", "clip[1].mp4", "x (copy).webm"]
    for name in names:
        touch(root / name)

    entries, _ = discover(str(root))  # an existing dir with '[' is a dir, not a glob
    assert uris(entries) == sorted(names)
    for entry in entries:
        assert Path(entry.path).is_file()

    # A glob whose literal root contains brackets still works.
    entries, description = discover(str(root / "*.mp4"))
    assert uris(entries) == ["clip[1].mp4", "with space.mp4"]
    assert "glob" in description

    # An existing file whose name looks like a glob is that single file.
    entries, _ = discover(str(root / "clip[1].mp4"))
    assert uris(entries) == ["clip[1].mp4"]


def test_discover_glob_recursive_and_flat(tmp_path):
    root = tmp_path / "col"
    touch(root / "top.mp4")
    touch(root / "d1" / "one.mp4")
    touch(root / "d1" / "d2" / "two.mp4")
    touch(root / "d1" / "skip.avi")
    touch(root / ".hidden" / "h.mp4")
    touch(root / "d1" / "README.md")

    flat, _ = discover(str(root / "*.mp4"))
    assert uris(flat) == ["top.mp4"]

    deep, _ = discover(str(root / "**" / "*.mp4"))
    assert uris(deep) == ["d1/d2/two.mp4", "d1/one.mp4", "top.mp4"]

    everything, _ = discover(str(root / "**" / "*"))  # non-media and hidden are filtered out
    assert uris(everything) == ["d1/d2/two.mp4", "d1/one.mp4", "d1/skip.avi", "top.mp4"]

    # The glob root is the literal prefix: uris are relative to it.
    under, _ = discover(str(root / "d1" / "*" / "*.mp4"))
    assert uris(under) == ["d2/two.mp4"]


def test_discover_relative_glob(tmp_path, monkeypatch):
    touch(tmp_path / "vids" / "a.mp4")
    monkeypatch.chdir(tmp_path)
    entries, _ = discover("vids/*.mp4")
    assert uris(entries) == ["a.mp4"]
    assert entries[0].path == str(tmp_path / "vids" / "a.mp4")


def test_discover_glob_without_matches_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="matched no files"):
        discover(str(tmp_path / "*.mp4"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(str(tmp_path / "missing-dir" / "*.mp4"))


def test_discover_missing_source_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a directory, a glob pattern"):
        discover(str(tmp_path / "nothing-here"))


def test_discover_empty_source_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        discover("  ")


def test_discover_unsupported_file_kind(tmp_path):
    with pytest.raises(ValueError, match="manifest"):
        discover(str(touch(tmp_path / "list.txt")))


def test_discover_parquet_manifest(tmp_path):
    col = tmp_path / "col"
    touch(col / "v" / "a.mp4")
    outside = touch(tmp_path / "elsewhere" / "b.mp4")
    table = pa.table(
        {
            "uri": ["v/a.mp4", str(outside), "./v/../missing.mp4", str(col / "v" / "a2.mp4"), None],
            "caption": ["a dog runs", None, "gone", "abs inside", "x"],
            "labels": [["dog", "run"], None, [], ["x"], None],
            "split": ["train", "test", None, "train", None],
            "extra": [1, 2, 3, 4, 5],
        }
    )
    manifest = col / "manifest.parquet"
    pq.write_table(table, manifest)

    entries, description = discover(str(manifest))
    by_uri = {entry.uri: entry for entry in entries}

    assert uris(entries) == sorted([str(outside), "missing.mp4", "v/a.mp4", "v/a2.mp4"])
    assert by_uri["v/a.mp4"] == MediaEntry(
        uri="v/a.mp4", path=str(col / "v" / "a.mp4"), caption="a dog runs",
        labels=["dog", "run"], split="train",
    )
    # Missing files are still entries (they become failed rows later).
    assert by_uri["missing.mp4"].path == str(col / "missing.mp4")
    assert by_uri["missing.mp4"].labels is None  # empty list -> no labels
    # Absolute uris inside the manifest's directory get the same uri as a directory scan.
    assert by_uri["v/a2.mp4"].path == str(col / "v" / "a2.mp4")
    assert by_uri[str(outside)].path == str(outside)
    assert "parquet manifest" in description and "1 rows with an empty uri skipped" in description


def test_discover_csv_manifest_parses_labels(tmp_path):
    col = tmp_path / "col"
    touch(col / "a.mp4")
    touch(col / "b.mp4")
    touch(col / "c.jpg")
    manifest = col / "list.csv"
    with open(manifest, "w", newline="", encoding="utf-8-sig") as handle:  # with a BOM
        writer = csv.writer(handle)
        writer.writerow(["uri", "caption", "labels", "split"])
        writer.writerow(["a.mp4", "  a caption, with comma ", "cat|dog", "train"])
        writer.writerow(["b.mp4", "", "red; green ;", ""])
        writer.writerow(["c.jpg", "an image", "", "test"])
        writer.writerow(["a.mp4", "duplicate row", "x", "val"])

    entries, description = discover(str(manifest))

    assert entries == [
        MediaEntry("a.mp4", str(col / "a.mp4"), "a caption, with comma", ["cat", "dog"], "train"),
        MediaEntry("b.mp4", str(col / "b.mp4"), None, ["red", "green"], None),
        MediaEntry("c.jpg", str(col / "c.jpg"), "an image", None, "test"),
    ]
    assert "csv manifest" in description and "1 duplicate" in description


def test_discover_manifest_captions_put_the_caption_first(tmp_path):
    pq.write_table(pa.table({
        "uri": ["a.mp4", "b.mp4", "c.mp4", "d.mp4"],
        "caption": ["a red ball", None, "only one", "a cat"],
        "captions": [["a crimson disc", "a red ball", " "], ["first of b", "second of b"], None, ["a cat"]],
    }), tmp_path / "m.parquet")
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text("uri,caption,captions\na.mp4,a red ball,a crimson disc| a scarlet circle\n")

    by_uri = {entry.uri: entry for entry in discover(str(tmp_path / "m.parquet"))[0]}
    from_csv = discover(str(csv_manifest))[0][0]

    assert (by_uri["a.mp4"].caption, by_uri["a.mp4"].captions) == ("a red ball", ["a red ball", "a crimson disc"])
    assert (by_uri["b.mp4"].caption, by_uri["b.mp4"].captions) == ("first of b", ["first of b", "second of b"])
    assert by_uri["c.mp4"].captions is None and by_uri["d.mp4"].captions is None  # one caption: nothing to add
    assert from_csv.captions == ["a red ball", "a crimson disc", "a scarlet circle"]


def test_catalog_written_before_the_captions_column_reads_with_null_captions(tmp_path, mixed_rows):
    layout = StoreLayout(tmp_path / "store")
    path = write_catalog(layout, "col", rows_to_table(mixed_rows))
    pq.write_table(pq.read_table(path).drop_columns(["captions"]), path)  # as an older version wrote it

    loaded = read_catalog(layout, "col")

    assert loaded.schema == CATALOG_SCHEMA and loaded["captions"].null_count == len(mixed_rows)


def test_discover_csv_manifest_with_only_uri_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri\nx.mp4\n")
    entries, _ = discover(str(manifest))
    assert entries == [MediaEntry("x.mp4", str(tmp_path / "x.mp4"))]


def test_manifest_without_uri_column_names_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,caption\nx.mp4,hi\n")
    with pytest.raises(ValueError, match=r"no 'uri' column.*\['path', 'caption'\]"):
        discover(str(manifest))
    parquet = tmp_path / "m.parquet"
    pq.write_table(pa.table({"file": ["a.mp4"]}), parquet)
    with pytest.raises(ValueError, match=r"found columns: \['file'\]"):
        discover(str(parquet))


# ---------------------------------------------------------------- identity


def test_video_id_is_stable_and_collection_scoped():
    expected = hashlib.sha256(b"news\0clips/a.mp4").hexdigest()[:16]
    assert video_id("news", "clips/a.mp4") == expected
    assert video_id("news", "clips/a.mp4") == video_id("news", "clips/a.mp4")
    assert video_id("sports", "clips/a.mp4") != expected
    assert video_id("news", "clips/b.mp4") != expected
    assert len(expected) == 16


def test_fingerprint_changes_with_content_and_mtime(tmp_path):
    path = touch(tmp_path / "f.mp4", b"a" * 1000)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    first = fingerprint(str(path))
    assert first.startswith("1000-1000000000-")
    assert fingerprint(str(path)) == first

    path.write_bytes(b"b" * 1000)  # same size, same mtime, different content
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    second = fingerprint(str(path))
    assert second != first

    os.utime(path, ns=(2_000_000_000, 2_000_000_000))  # same content, new mtime
    assert fingerprint(str(path)) != second


def test_fingerprint_of_large_file_hashes_head_and_tail(tmp_path):
    mib = 1 << 20
    data = bytearray(b"\x01" * (3 * mib))
    path = touch(tmp_path / "big.mp4", bytes(data))
    os.utime(path, ns=(5, 5))
    original = fingerprint(str(path))

    data[mib + 10] = 2  # the middle MiB is not hashed (cost stays bounded for big files)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(5, 5))
    assert fingerprint(str(path)) == original

    data[-1] = 2  # the last MiB is
    path.write_bytes(bytes(data))
    os.utime(path, ns=(5, 5))
    assert fingerprint(str(path)) != original


def test_fingerprint_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        fingerprint(str(tmp_path / "missing.mp4"))


# ---------------------------------------------------------------- catalog_row


def entry_for(path: Path, root: Path | None = None) -> MediaEntry:
    uri = path.relative_to(root).as_posix() if root else path.name
    return MediaEntry(uri=uri, path=str(path), caption="cap", labels=["l"], split="train")


def assert_failed(row: dict, *fragments: str) -> None:
    assert row["status"] == "failed"
    assert row["error"] and "\n" not in row["error"]
    for fragment in fragments:
        assert fragment in row["error"], row["error"]


def test_catalog_row_good_video(good_mp4):
    row = catalog_row(entry_for(good_mp4), "col", None)
    assert row["status"] == "ok", row["error"]
    assert row["error"] is None
    assert row["video_id"] == video_id("col", "good.mp4")
    assert (row["width"], row["height"]) == (64, 48)
    assert row["media_kind"] == "video"
    assert 0.8 <= row["duration_s"] <= 1.2
    assert row["fps"] == pytest.approx(10, rel=0.05)
    assert 9 <= row["frame_count"] <= 11
    assert row["size_bytes"] == good_mp4.stat().st_size
    assert row["fingerprint"] == fingerprint(str(good_mp4))
    assert (row["caption"], row["labels"], row["split"]) == ("cap", ["l"], "train")
    assert rows_to_table([row]).schema == CATALOG_SCHEMA


def test_catalog_row_image(tmp_path):
    path = tmp_path / "pic.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    row = catalog_row(entry_for(path), "col", None)
    assert row["status"] == "ok", row["error"]
    assert row["media_kind"] == "image"
    assert (row["width"], row["height"], row["frame_count"]) == (40, 30, 1)
    assert (row["duration_s"], row["fps"]) == (0.0, 0.0)


def test_catalog_row_corrupt_image(tmp_path):
    path = touch(tmp_path / "pic.jpg", b"definitely not a jpeg")
    assert_failed(catalog_row(entry_for(path), "col", None), "not an image")


def test_catalog_row_missing_file(tmp_path):
    row = catalog_row(entry_for(tmp_path / "gone.mp4"), "col", None)
    assert_failed(row, "missing file", "gone.mp4")
    assert row["fingerprint"] is None and row["size_bytes"] == 0


def test_catalog_row_zero_byte_file(tmp_path):
    path = touch(tmp_path / "empty.mp4", b"")
    assert_failed(catalog_row(entry_for(path), "col", None), "empty file (0 bytes)")


def test_catalog_row_text_file_named_mp4(tmp_path):
    path = touch(tmp_path / "notes.mp4", b"this is plain text, not a video\n" * 20)
    row = catalog_row(entry_for(path), "col", None)
    assert_failed(row, "not a video file")
    assert row["size_bytes"] == path.stat().st_size  # stat info is kept for failed rows


def test_catalog_row_truncated_mp4(tmp_path, good_mp4_bytes):
    path = touch(tmp_path / "cut.mp4", good_mp4_bytes[: len(good_mp4_bytes) // 2])
    row = catalog_row(entry_for(path), "col", None)
    assert_failed(row)
    assert "truncated" in row["error"] or "corrupt" in row["error"], row["error"]


def test_catalog_row_directory_named_like_video(tmp_path):
    (tmp_path / "folder.mp4").mkdir()
    assert_failed(catalog_row(entry_for(tmp_path / "folder.mp4"), "col", None), "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_catalog_row_permission_denied(tmp_path, good_mp4):
    good_mp4.chmod(0)
    try:
        assert_failed(catalog_row(entry_for(good_mp4), "col", None), "permission denied")
    finally:
        good_mp4.chmod(0o644)


def test_catalog_row_unreadable_file(good_mp4, monkeypatch):
    def unreadable(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(catalog, "fingerprint", unreadable)
    assert_failed(catalog_row(entry_for(good_mp4), "col", None), "permission denied", "good.mp4")


def test_catalog_row_of_an_unknown_uri_scheme_is_a_failed_row():
    row = catalog_row(MediaEntry(uri="a.mp4", path="nosuch://b/a.mp4"), "col", None)
    assert_failed(row, "unsupported storage location 'nosuch://b/a.mp4'")


def test_catalog_row_unexpected_exception_becomes_data(good_mp4, monkeypatch):
    def exploding_probe(path):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(catalog, "probe_video", exploding_probe)
    assert_failed(catalog_row(entry_for(good_mp4), "col", None), "RuntimeError", "boom second line")


def test_catalog_row_reuses_previous_probe_when_fingerprint_matches(good_mp4, monkeypatch):
    def probe_must_not_run(path):
        raise AssertionError("probe_video was called for an unchanged file")

    monkeypatch.setattr(catalog, "probe_video", probe_must_not_run)
    previous = {
        "status": "ok",
        "fingerprint": fingerprint(str(good_mp4)),
        "duration_s": np.float64(12.5),  # as rows come back from Arrow/pandas
        "fps": 25.0,
        "width": np.int32(640),
        "height": 360,
        "frame_count": 312,
    }
    row = catalog_row(entry_for(good_mp4), "col", previous)
    assert row["status"] == "ok", row["error"]
    assert (row["duration_s"], row["fps"], row["width"], row["height"], row["frame_count"]) == (
        12.5, 25.0, 640, 360, 312,
    )
    assert type(row["width"]) is int and type(row["duration_s"]) is float


def test_catalog_row_probes_again_when_previous_is_stale_or_failed(good_mp4, monkeypatch):
    calls = []
    real_probe = catalog.probe_video

    def counting_probe(path):
        calls.append(path)
        return real_probe(path)

    monkeypatch.setattr(catalog, "probe_video", counting_probe)
    base = {"duration_s": 9.0, "fps": 9.0, "width": 9, "height": 9, "frame_count": 9}
    stale = {**base, "status": "ok", "fingerprint": "1-2-deadbeef"}
    failed = {**base, "status": "failed", "fingerprint": fingerprint(str(good_mp4))}
    for previous in (stale, failed):
        row = catalog_row(entry_for(good_mp4), "col", previous)
        assert row["status"] == "ok" and row["width"] == 64
    assert len(calls) == 2


# ---------------------------------------------------------------- tables and versions


@pytest.fixture
def mixed_rows(tmp_path, good_mp4_bytes) -> list[dict]:
    root = tmp_path / "col"
    touch(root / "ok.mp4", good_mp4_bytes)
    touch(root / "empty.mp4", b"")
    Image.new("RGB", (8, 8)).save(root / "img.png")
    entries, _ = discover(str(root))
    entries.append(MediaEntry(uri="missing.mp4", path=str(root / "missing.mp4")))
    return [catalog_row(entry, "col", None) for entry in entries]


def test_summary_counts(mixed_rows):
    summary = catalog_summary(rows_to_table(mixed_rows))
    assert summary["total"] == 4
    assert summary["ok"] == 2 and summary["failed"] == 2
    assert summary["videos"] == 3 and summary["images"] == 1
    assert summary["failure_rate"] == pytest.approx(0.5)
    assert [uri for uri, _ in summary["failures"]] == ["empty.mp4", "missing.mp4"]
    assert summary["failures"][0][1] == "empty file (0 bytes)"


def test_summary_of_empty_table():
    summary = catalog_summary(rows_to_table([]))
    assert summary["total"] == 0 and summary["failure_rate"] == 0.0 and summary["failures"] == []


def test_write_read_round_trip_with_latest_pointer(tmp_path, mixed_rows):
    layout = StoreLayout(tmp_path / "store")
    assert read_catalog(layout, "col") is None

    first = write_catalog(layout, "col", rows_to_table(mixed_rows))
    second_table = rows_to_table(mixed_rows[:2])
    second = write_catalog(layout, "col", second_table)

    directory = layout.catalog_dir("col")
    assert first != second and first.exists() and second.exists()  # old versions are kept
    assert first.name.startswith("catalog-") and first.suffix == ".parquet"
    pointer = (directory / "LATEST").read_text()
    assert second.name in pointer
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]

    loaded = read_catalog(layout, "col")
    assert loaded is not None and loaded.schema == CATALOG_SCHEMA
    assert loaded.equals(second_table)
    assert loaded.column("cataloged_at").type == pa.timestamp("us", tz="UTC")

    by_id = previous_rows_by_id(loaded)
    assert set(by_id) == {row["video_id"] for row in mixed_rows[:2]}
    assert previous_rows_by_id(None) == {}


def test_unchanged_files_reuse_catalog_from_store(tmp_path, mixed_rows, monkeypatch):
    layout = StoreLayout(tmp_path / "store")
    write_catalog(layout, "col", rows_to_table(mixed_rows))
    previous = previous_rows_by_id(read_catalog(layout, "col"))

    monkeypatch.setattr(catalog, "probe_video", lambda path: 1 / 0)
    ok_row = next(row for row in mixed_rows if row["uri"] == "ok.mp4")
    entry = MediaEntry(uri=ok_row["uri"], path=ok_row["path"])
    again = catalog_row(entry, "col", previous[ok_row["video_id"]])
    assert again["status"] == "ok" and again["width"] == 64


def test_read_catalog_with_dangling_pointer_is_clear(tmp_path, mixed_rows):
    layout = StoreLayout(tmp_path / "store")
    path = write_catalog(layout, "col", rows_to_table(mixed_rows))
    path.unlink()
    with pytest.raises(FileNotFoundError, match="re-run the catalog step"):
        read_catalog(layout, "col")


def test_write_catalog_rejects_non_catalog_table(tmp_path, mixed_rows):
    with pytest.raises(ValueError, match="missing columns"):
        write_catalog(StoreLayout(tmp_path), "col", pa.table({"uri": ["a"]}))
    broken = dict(mixed_rows[0], status=None)
    with pytest.raises(ValueError, match="'status' must not contain nulls"):
        rows_to_table([broken])
    assert not (tmp_path / "catalog").exists()


def test_a_directory_with_a_root_manifest_takes_its_captions(tmp_path):
    from pipeline.catalog import discover
    from pipeline.sample_collection import make_sample_collection

    manifest = pq.read_table(make_sample_collection(tmp_path, 2, seed=1)).to_pylist()
    (tmp_path / "extra.mp4").write_bytes((tmp_path / manifest[0]["uri"]).read_bytes())
    entries, description = discover(str(tmp_path))
    by_uri = {entry.uri: entry for entry in entries}
    assert sorted(by_uri) == sorted([row["uri"] for row in manifest] + ["extra.mp4"])
    for row in manifest:
        assert (by_uri[row["uri"]].caption, by_uri[row["uri"]].labels, by_uri[row["uri"]].split) == (
            row["caption"], row["labels"], row["split"])
    assert by_uri["extra.mp4"].caption is None  # not in the manifest: a file without a caption
    assert f"captions and labels from {tmp_path / 'manifest.parquet'} for 2 of them" in description
