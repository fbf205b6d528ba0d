"""Planning a run: where the catalog's files are probed, and that both ways give the same rows."""

from __future__ import annotations

from dataclasses import asdict

import pyarrow as pa
import pytest
import ray

from pipeline import plan
from pipeline.catalog import discover
from pipeline.store import StoreLayout
from tests.media_files import write_tiny_mp4


def test_probe_in_driver_on_one_node_whatever_the_size():
    assert plan.probe_in_driver(files=10 * plan.DRIVER_PROBE_MAX_FILES, nodes=1)


def test_probe_in_ray_tasks_only_for_large_catalogs_on_several_nodes():
    assert plan.probe_in_driver(files=plan.DRIVER_PROBE_MAX_FILES, nodes=3)
    assert not plan.probe_in_driver(files=plan.DRIVER_PROBE_MAX_FILES + 1, nodes=3)


@pytest.mark.parametrize(("cpus", "threads"), [(1, 2), (2, 4), (4, 8), (64, 8)])
def test_probe_threads_twice_the_cores_within_2_to_8(cpus, threads):
    assert plan.probe_threads(cpus) == threads


def make_collection(root):
    for index in range(5):
        write_tiny_mp4(root / f"clip {index}.mp4", seconds=0.6, seed=index)
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("not a video")
    return root


def without_time(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "cataloged_at"} for row in rows]


def test_driver_threads_and_ray_tasks_give_the_same_rows_in_the_same_order(tmp_path, ray_instance):
    entries, _ = discover(str(make_collection(tmp_path / "media")))
    previous = [None] * len(entries)
    in_driver = plan.catalog_rows(entries, "c", previous, threads=4)
    in_tasks = ray.get(plan._catalog_rows.remote([asdict(entry) for entry in entries], "c", previous))
    assert without_time(in_driver) == without_time(in_tasks)
    assert [row["uri"] for row in in_driver] == [entry.uri for entry in entries]
    errors = {row["uri"]: row["error"] for row in in_driver if row["status"] != "ok"}
    assert set(errors) == {"empty.mp4", "notes.mp4"} and "empty file" in errors["empty.mp4"]
    assert all(row["frame_count"] > 0 for row in in_driver if row["status"] == "ok")


def test_refresh_catalog_takes_the_ray_tasks_way_when_told(tmp_path, ray_instance, monkeypatch):
    media = make_collection(tmp_path / "media")
    layout = StoreLayout.from_option(str(tmp_path / "store"))
    in_driver = plan.refresh_catalog(layout, str(media), "c")
    monkeypatch.setattr(plan, "probe_in_driver", lambda files, nodes: False)
    monkeypatch.setattr(plan, "catalog_rows", lambda *args, **kwargs: pytest.fail("probed in the driver"))
    in_tasks = plan.refresh_catalog(layout, str(media), "c")
    drop = ["cataloged_at"]
    assert in_tasks.table.drop(drop).equals(in_driver.table.drop(drop))
    assert in_tasks.changes == {"new": 0, "changed": 0, "deleted": 0, "unchanged": 7}
    assert isinstance(in_tasks.table, pa.Table) and in_tasks.summary["failed"] == 2
