"""Tests for pipeline/shards.py: run writers, commit manifests, what readers can see."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pyarrow as pa

from pipeline.shards import (
    MANIFEST_NAME,
    ShardRunWriter,
    committed_runs,
    content_key,
    iter_run_tables,
    read_run,
)


def _table(values: list[int]) -> pa.Table:
    return pa.table({"value": pa.array(values, pa.int64())})


def _temp_leftovers(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.startswith(".tmp-")]


def test_content_key_is_stable_short_and_order_sensitive():
    key = content_key(["model", "a:1", "b:2"])
    assert key == content_key(["model", "a:1", "b:2"])
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert key != content_key(["model", "b:2", "a:1"])
    # Parts are separated, so moving a boundary changes the key.
    assert content_key(["ab", "c"]) != content_key(["a", "bc"])


def test_write_and_commit_then_read_back(tmp_path):
    writer = ShardRunWriter(tmp_path / "set", "k1")
    first = writer.write(_table([1, 2, 3]))
    second = writer.write(_table([4, 5]))
    part = f"part-{writer.writer_id}"
    assert first.name == f"{part}-00000.parquet" and second.name == f"{part}-00001.parquet"
    manifest = writer.commit({"kind": "test", "note": "hello"})

    assert writer.is_committed
    assert manifest["rows"] == 5
    assert manifest["files"] == [
        {"file": f"{part}-00000.parquet", "rows": 3},
        {"file": f"{part}-00001.parquet", "rows": 2},
    ]
    assert manifest["run_key"] == "k1" and manifest["kind"] == "test" and manifest["note"] == "hello"

    [(run_dir, read_manifest)] = committed_runs(tmp_path / "set")
    assert run_dir == tmp_path / "set" / "run-k1"
    assert read_manifest == manifest
    assert read_run(run_dir, read_manifest)["value"].to_pylist() == [1, 2, 3, 4, 5]
    assert [t.num_rows for t in iter_run_tables(run_dir, read_manifest, columns=["value"])] == [3, 2]
    assert _temp_leftovers(tmp_path) == []


def test_empty_tables_are_not_written(tmp_path):
    writer = ShardRunWriter(tmp_path / "set", "k")
    assert writer.write(_table([])) is None
    manifest = writer.commit({})
    assert manifest["files"] == [] and manifest["rows"] == 0
    [(run_dir, read_manifest)] = committed_runs(tmp_path / "set")
    assert read_run(run_dir, read_manifest) is None
    assert sorted(p.name for p in run_dir.iterdir()) == [MANIFEST_NAME]


def test_uncommitted_run_is_invisible(tmp_path):
    writer = ShardRunWriter(tmp_path / "set", "pending")
    writer.write(_table([1]))
    assert not writer.is_committed
    assert committed_runs(tmp_path / "set") == []


def test_missing_set_dir_has_no_runs(tmp_path):
    assert committed_runs(tmp_path / "never-written") == []


def test_unreadable_manifest_is_skipped(tmp_path):
    good = ShardRunWriter(tmp_path / "set", "good")
    good.write(_table([1]))
    good.commit({})
    broken = tmp_path / "set" / "run-broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text("{ not json")
    assert [path.name for path, _ in committed_runs(tmp_path / "set")] == ["run-good"]


def test_two_writers_of_one_run_never_touch_each_others_files(tmp_path):
    first = ShardRunWriter(tmp_path / "set", "same")
    second = ShardRunWriter(tmp_path / "set", "same")
    assert first.writer_id != second.writer_id and first.run_dir == second.run_dir
    first.write(_table([1, 2]))
    second.write(_table([1, 2]))
    assert committed_runs(tmp_path / "set") == []  # nothing visible before a commit
    committed = second.commit({"by": "second"})
    assert first.commit({"by": "first"}) == committed  # the run was already committed: the first copy is dropped
    [(run_dir, manifest)] = committed_runs(tmp_path / "set")
    assert manifest["by"] == "second" and read_run(run_dir, manifest)["value"].to_pylist() == [1, 2]
    assert sorted(p.name for p in run_dir.iterdir()) == [MANIFEST_NAME, f"part-{second.writer_id}-00000.parquet"]
    assert _temp_leftovers(tmp_path) == []


def test_parts_left_in_the_run_directory_by_a_dead_writer_are_not_read(tmp_path):
    stale = tmp_path / "set" / "run-same"
    stale.mkdir(parents=True)
    (stale / "part-deadbeef0000-00000.parquet").write_bytes(b"half written")
    writer = ShardRunWriter(tmp_path / "set", "same")
    writer.write(_table([9]))
    manifest = writer.commit({})
    assert [item["file"] for item in manifest["files"]] == [f"part-{writer.writer_id}-00000.parquet"]
    assert read_run(writer.run_dir, manifest)["value"].to_pylist() == [9]


def _write_one_run(set_dir: str, values: list[int], start) -> None:
    start.wait(30)
    writer = ShardRunWriter(Path(set_dir), "shared")
    for value in values:
        writer.write(_table([value]))
    writer.commit({"pid": os.getpid()})


def test_two_processes_writing_the_same_run_leave_exactly_one_readable_committed_run(tmp_path):
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_write_one_run, args=(str(tmp_path / "set"), list(range(20)), start))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    [(run_dir, manifest)] = committed_runs(tmp_path / "set")
    assert manifest["pid"] in {worker.pid for worker in workers}
    assert read_run(run_dir, manifest)["value"].to_pylist() == list(range(20))
    assert _temp_leftovers(tmp_path) == []


def test_committed_run_is_not_cleared_by_a_new_writer(tmp_path):
    done = ShardRunWriter(tmp_path / "set", "same")
    done.write(_table([1, 2]))
    manifest = done.commit({})
    again = ShardRunWriter(tmp_path / "set", "same")
    assert again.is_committed
    [(run_dir, read_manifest)] = committed_runs(tmp_path / "set")
    assert read_manifest == manifest
    assert read_run(run_dir, read_manifest)["value"].to_pylist() == [1, 2]


def test_committed_runs_newest_first(tmp_path):
    for key in ("first", "second", "third"):
        writer = ShardRunWriter(tmp_path / "set", key)
        writer.write(_table([len(key)]))
        writer.commit({})
    # An uncommitted run in between is not listed at all.
    pending = ShardRunWriter(tmp_path / "set", "pending")
    pending.write(_table([0]))
    runs = committed_runs(tmp_path / "set")
    assert [manifest["run_key"] for _, manifest in runs] == ["third", "second", "first"]
    assert (pending.run_dir / f"part-{pending.writer_id}-00000.parquet").exists()  # written, yet never listed
