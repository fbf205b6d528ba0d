"""Tests for pipeline/gc.py on a small real store: what is removed, what a dry run lists, what locks protect."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pyarrow as pa

from hashing.bits import codes_to_arrow
from pipeline.codes import code_schema
from pipeline.gc import collect_garbage
from pipeline.locks import collection_lock, index_run_lock
from pipeline.publish import CollectionCodes, current_version, list_versions, publish_index, with_catalog_columns
from pipeline.shards import ShardRunWriter
from pipeline.store import StoreLayout


def _codes_run(layout: StoreLayout, key: str):
    writer = ShardRunWriter(layout.codes_dir("m", "col"), key)
    codes = pa.table({"video_id": ["a", "b"], "clip_idx": pa.array([0, 0], pa.int32()), "t_start": [0.0, 0.0],
                      "t_end": [1.0, 1.0], "code": codes_to_arrow(np.array([[1, 2], [3, 4]], np.uint8))},
                     schema=code_schema(16))
    writer.write(codes)
    manifest = writer.commit({})
    return writer.run_dir, codes, manifest


def _store(tmp_path) -> StoreLayout:
    """Index 'main' with three versions, each on its own code run, plus leftovers of killed writers."""
    layout = StoreLayout(tmp_path)
    catalog = pa.table({"video_id": ["a", "b"], "uri": ["a.mp4", "b.mp4"], "caption": ["x", "y"],
                        "labels": pa.array([None, None], pa.list_(pa.string()))})
    for key in ("k1", "k2", "k3"):
        run_dir, codes, _ = _codes_run(layout, key)
        publish_index(layout, "main", model_id=f"m-{key}", code_bits=16, metrics={}, model_info={},
                      collections=[CollectionCodes("col", str(run_dir.relative_to(layout.root)),
                                                   with_catalog_columns(codes, catalog))])
    ShardRunWriter(layout.codes_dir("m", "col"), "dead").write(codes)  # a killed writer: parts, no manifest
    (layout.index_dir("main") / ".tmp-v9-abc").mkdir()  # a killed publish
    (layout.index_dir("main") / ".tmp-manifest.json.123").write_text("{")
    return layout


def test_removes_leftovers_and_old_versions_keeping_current_and_what_it_uses(tmp_path):
    layout = _store(tmp_path)
    report = collect_garbage(layout, keep_versions=1)
    removed = {item["path"] for item in report.removed}
    assert {"index/main/v1", "index/main/v2", "index/main/.tmp-v9-abc", "index/main/.tmp-manifest.json.123"} <= removed
    assert "codes/m/col/run-k1" in removed and "codes/m/col/run-k2" in removed
    assert "codes/m/col/run-dead" in removed
    assert list_versions(layout, "main") == [3] and current_version(layout, "main") == 3
    assert (layout.codes_dir("m", "col") / "run-k3").is_dir()
    assert report.freed_bytes == sum(item["bytes"] for item in report.removed) > 0
    assert [p for p in tmp_path.rglob(".tmp-*")] == []


def test_dry_run_lists_the_same_items_and_removes_nothing(tmp_path):
    layout = _store(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    dry = collect_garbage(layout, keep_versions=1, dry_run=True)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    real = collect_garbage(layout, keep_versions=1)
    assert sorted(i["path"] for i in dry.removed) == sorted(i["path"] for i in real.removed)


def test_without_keep_versions_only_leftovers_go(tmp_path):
    layout = _store(tmp_path)
    collect_garbage(layout)
    assert list_versions(layout, "main") == [1, 2, 3]
    assert [p for p in tmp_path.rglob(".tmp-*")] == []


def _hold(root: str, kind: str, ready, release) -> None:
    layout = StoreLayout(root)
    with index_run_lock(layout, "main") if kind == "index" else collection_lock(layout, "col"):
        ready.set()
        release.wait(60)


def test_what_a_running_writer_holds_is_skipped(tmp_path):
    layout = _store(tmp_path)
    context = multiprocessing.get_context("spawn")
    holders = []
    for kind in ("index", "collection"):
        ready, release = context.Event(), context.Event()
        process = context.Process(target=_hold, args=(str(tmp_path), kind, ready, release))
        process.start()
        assert ready.wait(60)
        holders.append(process)
    try:
        report = collect_garbage(layout, keep_versions=1)
    finally:
        for process in holders:
            os.kill(process.pid, signal.SIGKILL)
            process.join(30)
    assert report.removed == []
    skipped = {item["path"] for item in report.skipped}
    assert {"index/main/.tmp-v9-abc", "index/main", "codes/m/col"} <= skipped
    assert list_versions(layout, "main") == [1, 2, 3]
