"""Tests for pipeline/publish.py: index versions, the CURRENT pointer, checksums, catalog joins."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import CorruptStoreError

from hashing.bits import codes_from_arrow, codes_to_arrow
from hashing.index import BinaryIndexShard
from pipeline.codes import code_schema
from pipeline.publish import (
    CollectionCodes,
    IndexNotFoundError,
    current_version,
    list_versions,
    publish_index,
    read_current_manifest,
    set_current,
    verify_version,
    with_catalog_columns,
)
from pipeline.store import StoreLayout

BITS = 16


def _codes_table(clips: list[tuple[str, int, int]]) -> pa.Table:
    """Code rows from (video_id, clip_idx, code as a 16-bit integer)."""
    packed = np.array([[code >> 8, code & 0xFF] for _, _, code in clips], dtype=np.uint8).reshape(-1, 2)
    return pa.table(
        {
            "video_id": [c[0] for c in clips],
            "clip_idx": pa.array([c[1] for c in clips], pa.int32()),
            "t_start": [4.0 * c[1] for c in clips],
            "t_end": [4.0 * c[1] + 4.0 for c in clips],
            "code": codes_to_arrow(packed),
        },
        schema=code_schema(BITS),
    )


def _catalog(video_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            "video_id": video_ids,
            "uri": [f"{v}.mp4" for v in video_ids],
            "caption": [f"caption of {v}" for v in video_ids],
            "labels": pa.array([[v, "all"] for v in video_ids], pa.list_(pa.string())),
            "status": ["ok"] * len(video_ids),
        }
    )


def _collection(name: str, run: str, clips: list[tuple[str, int, int]]) -> CollectionCodes:
    codes = _codes_table(clips)
    video_ids = sorted(set(codes["video_id"].to_pylist()))
    return CollectionCodes(collection=name, codes_run=run, table=with_catalog_columns(codes, _catalog(video_ids)))


CLIPS = [("a", 0, 0x0000), ("a", 1, 0x0001), ("b", 0, 0x00FF), ("c", 0, 0xFF00), ("c", 1, 0xFFFF)]


def _publish(layout: StoreLayout, collections: list[CollectionCodes], name: str = "idx", shard_rows: int = 2):
    return publish_index(
        layout, name, model_id="model-1", code_bits=BITS, collections=collections,
        metrics={"col": {"text_to_video.hash.R@1": 50.0}}, model_info={"method": "lsh"}, shard_rows=shard_rows,
    )


def _hidden_leftovers(layout: StoreLayout, name: str = "idx") -> list[str]:
    return [p.name for p in layout.index_dir(name).iterdir() if p.name.startswith(".tmp")]


def test_with_catalog_columns_joins_uri_caption_labels():
    codes = _codes_table([("b", 1, 3), ("a", 0, 1), ("b", 0, 2), ("zz", 0, 4)])
    joined = with_catalog_columns(codes, _catalog(["a", "b"]))
    assert joined.column_names == ["video_id", "clip_idx", "t_start", "t_end", "code", "uri", "caption", "labels"]
    rows = joined.select(["video_id", "clip_idx", "uri", "caption", "labels"]).to_pylist()
    assert rows == [
        {"video_id": "a", "clip_idx": 0, "uri": "a.mp4", "caption": "caption of a", "labels": ["a", "all"]},
        {"video_id": "b", "clip_idx": 0, "uri": "b.mp4", "caption": "caption of b", "labels": ["b", "all"]},
        {"video_id": "b", "clip_idx": 1, "uri": "b.mp4", "caption": "caption of b", "labels": ["b", "all"]},
        # A video missing from the catalog keeps its code row with empty metadata.
        {"video_id": "zz", "clip_idx": 0, "uri": None, "caption": None, "labels": None},
    ]
    # Codes travel with their rows through the sort.
    assert codes_from_arrow(joined["code"])[:, 1].tolist() == [1, 2, 3, 4]


def test_first_publish_is_v1_with_shards_and_manifest(tmp_path):
    layout = StoreLayout(tmp_path)
    result = _publish(layout, [_collection("col", "run-1", CLIPS)], shard_rows=2)

    assert result.published and result.version == 1
    assert result.version_dir == layout.index_version_dir("idx", 1)
    assert layout.current_pointer("idx").read_text() == "v1\n"
    assert current_version(layout, "idx") == 1

    manifest = result.manifest
    assert manifest["counts"] == {"clips": 5, "videos": 3, "shards": 3}
    assert manifest["collections"] == {"col": {"codes_run": "run-1", "videos": 3, "clips": 5}}
    assert manifest["code_bits"] == BITS and manifest["model_id"] == "model-1"
    assert manifest["metrics"] == {"col": {"text_to_video.hash.R@1": 50.0}}
    assert [s["rows"] for s in manifest["shards"]] == [2, 2, 1]

    # Shard files hold exactly the published rows, in order, with their ids.
    all_codes = []
    for shard in manifest["shards"]:
        index = BinaryIndexShard.load(result.version_dir / shard["index_file"])
        ids = pq.read_table(result.version_dir / shard["ids_file"])
        assert len(index) == ids.num_rows == shard["rows"]
        assert set(ids["collection"].to_pylist()) == {"col"}
        all_codes.append(codes_from_arrow(ids["code"]))
    packed = np.concatenate(all_codes)
    assert [(int(hi) << 8) | int(lo) for hi, lo in packed] == [code for _, _, code in CLIPS]

    assert read_current_manifest(layout, "idx") == (1, result.version_dir, manifest)
    assert verify_version(result.version_dir, manifest) == []
    assert _hidden_leftovers(layout) == []


def test_unchanged_content_is_not_published_again(tmp_path):
    layout = StoreLayout(tmp_path)
    first = _publish(layout, [_collection("col", "run-1", CLIPS)])
    again = _publish(layout, [_collection("col", "run-1", CLIPS)])
    assert not again.published
    assert again.version == 1 and again.version_dir == first.version_dir
    assert list_versions(layout, "idx") == [1]


def test_new_content_is_v2_and_earlier_versions_are_kept(tmp_path):
    layout = StoreLayout(tmp_path)
    first = _publish(layout, [_collection("col", "run-1", CLIPS)])
    second = _publish(layout, [_collection("col", "run-2", CLIPS[:2])])
    third = _publish(layout, [_collection("col", "run-2", CLIPS[:2]), _collection("other", "run-9", CLIPS[2:])])

    assert (second.version, third.version) == (2, 3) and second.published and third.published
    assert list_versions(layout, "idx") == [1, 2, 3]
    assert layout.current_pointer("idx").read_text() == "v3\n"
    assert (first.version_dir / "manifest.json").exists()
    assert third.manifest["counts"] == {"clips": 5, "videos": 3, "shards": 3}
    assert set(third.manifest["collections"]) == {"col", "other"}

    # Rollback: point CURRENT at an earlier, complete version.
    set_current(layout, "idx", 1)
    assert read_current_manifest(layout, "idx")[0] == 1
    with pytest.raises(IndexNotFoundError, match="v7"):
        set_current(layout, "idx", 7)


def test_failed_build_leaves_no_staging_dir_and_keeps_current(tmp_path):
    layout = StoreLayout(tmp_path)
    _publish(layout, [_collection("col", "run-1", CLIPS)])
    good = _collection("col", "run-2", CLIPS)
    # A null code cannot be indexed: building the faiss shard raises half-way through the version.
    codes = good.table["code"].to_pylist()
    codes[3] = None
    broken_table = good.table.set_column(
        good.table.schema.get_field_index("code"), "code", pa.array(codes, pa.binary(2))
    )
    broken = CollectionCodes("col", "run-2", broken_table)

    with pytest.raises(ValueError, match="null"):
        _publish(layout, [broken], shard_rows=2)

    assert _hidden_leftovers(layout) == []
    assert list_versions(layout, "idx") == [1]
    assert layout.current_pointer("idx").read_text() == "v1\n"
    # The next good publish still gets the next number.
    assert _publish(layout, [good]).version == 2


def test_verify_version_detects_tampered_and_missing_files(tmp_path):
    layout = StoreLayout(tmp_path)
    result = _publish(layout, [_collection("col", "run-1", CLIPS)], shard_rows=2)
    ids_file = result.version_dir / result.manifest["shards"][1]["ids_file"]
    data = bytearray(ids_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ids_file.write_bytes(bytes(data))
    (result.version_dir / result.manifest["shards"][2]["index_file"]).unlink()

    problems = verify_version(result.version_dir, result.manifest)
    assert len(problems) == 2
    assert any("checksum mismatch" in p and ids_file.name in p for p in problems)
    assert any(p.startswith("missing") and "shard-00002.faissbin" in p for p in problems)


def test_missing_index_error_says_what_to_run(tmp_path):
    layout = StoreLayout(tmp_path)
    with pytest.raises(IndexNotFoundError) as missing:
        read_current_manifest(layout, "nothing")
    message = str(missing.value)
    assert "'nothing' has no published version" in message
    assert "reelhash index" in message and "--index nothing" in message
    assert "Published indexes" not in message

    _publish(layout, [_collection("col", "run-1", CLIPS)], name="alpha")
    _publish(layout, [_collection("col", "run-1", CLIPS)], name="beta")
    with pytest.raises(IndexNotFoundError, match=r"Published indexes: alpha, beta\."):
        read_current_manifest(layout, "gamma")


def test_corrupt_or_incomplete_current_is_a_clear_error(tmp_path):
    layout = StoreLayout(tmp_path)
    result = _publish(layout, [_collection("col", "run-1", CLIPS)])
    layout.current_pointer("idx").write_text("garbage\n")
    with pytest.raises(CorruptStoreError, match="corrupt"):
        current_version(layout, "idx")
    layout.current_pointer("idx").write_text("v1\n")
    (result.version_dir / "manifest.json").unlink()
    with pytest.raises(CorruptStoreError, match="incomplete.*reelhash rollback --index idx"):
        read_current_manifest(layout, "idx")


def test_publishing_no_collections_gives_an_empty_version(tmp_path):
    layout = StoreLayout(tmp_path)
    result = _publish(layout, [])
    assert result.published and result.manifest["counts"] == {"clips": 0, "videos": 0, "shards": 0}
    assert result.manifest["shards"] == []


def test_quality_regressions_gate_only_hash_metrics_of_large_enough_sets():
    from pipeline.publish import quality_regressions

    published = {"eval_videos": 40, "t2v.hash.R@1": 50.0, "t2v.hash.MdR": 2.0, "t2v.float.R@1": 60.0}
    assert quality_regressions(published, {**published, "t2v.hash.R@1": 46.0}, 0.1) == []
    problems = quality_regressions(published, {**published, "t2v.hash.R@1": 44.0, "t2v.float.R@1": 1.0}, 0.1)
    assert problems == ["t2v.hash.R@1: 44 < published 50 (tolerance 10%)"]
    assert quality_regressions(published, {**published, "t2v.hash.MdR": 99.0}, 0.1) == []
    small = {**published, "eval_videos": 5}
    assert quality_regressions(small, {**small, "t2v.hash.R@1": 0.0}, 0.1) == []
    assert quality_regressions(small, {**small, "t2v.hash.R@1": 0.0}, 0.1, min_videos=5)


def test_rollback_moves_current_to_the_previous_complete_version(tmp_path):
    from pipeline.publish import IndexNotFoundError, current_version, rollback, set_current

    layout = StoreLayout(tmp_path)
    for version in (1, 2, 3):
        directory = layout.index_version_dir("idx", version)
        directory.mkdir(parents=True)
        (directory / "manifest.json").write_text("{}")
    set_current(layout, "idx", 3)
    assert rollback(layout, "idx") == (3, 2) and current_version(layout, "idx") == 2
    assert rollback(layout, "idx", 3) == (2, 3)
    with pytest.raises(IndexNotFoundError, match="no complete version v7"):
        rollback(layout, "idx", 7)
    set_current(layout, "idx", 1)
    with pytest.raises(IndexNotFoundError, match="nothing to roll back"):
        rollback(layout, "idx")
