"""Unit tests of pipeline/extract.py's bookkeeping (the Ray pipeline itself runs in the e2e tests): units, their
completion from workers' records, the encoder pool size from the cluster."""

from __future__ import annotations

import ray

from hashing.encoders import OpenClipEncoderConfig
import json

import numpy as np
import pyarrow.parquet as pq

from pipeline.extract import (END_OF_VIDEO, ExtractConfig, FeaturePartWriter, UnitProgress, decode_batches,
                              decode_groups, decode_slots, encoder_pool_size, extract_clip_features, plan_units,
                              pool_request, prewarmed_pool_name, start_encoder_pool,
                              start_prewarmed_pool)
from pipeline.ray_runtime import store_env_vars
from pipeline.sampling import SamplingConfig
from tests.media_files import write_tiny_mp4

ENCODER = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True)


def _rows(n: int) -> list[dict]:
    return [{"video_id": f"v{i:02d}", "fingerprint": f"f{i}", "path": f"/m/{i}.mp4"} for i in range(n)]


def test_units_cut_sorted_videos_and_are_keyed_by_their_content():
    units = plan_units(list(reversed(_rows(5))), ENCODER, SamplingConfig(), unit_videos=2)
    assert [sorted(u.videos) for u in units] == [["v00", "v01"], ["v02", "v03"], ["v04"]]
    again = plan_units(_rows(5), ENCODER, SamplingConfig(), unit_videos=2)
    assert [u.key for u in units] == [u.key for u in again]
    changed = _rows(5)
    changed[4]["fingerprint"] = "new"
    assert [u.key for u in plan_units(changed, ENCODER, SamplingConfig(), 2)][:2] == [u.key for u in units][:2]
    assert plan_units(changed, ENCODER, SamplingConfig(), 2)[2].key != units[2].key


def _record(unit: str, file: str | None, clips: dict, ended: dict | None = None, failures: list | None = None):
    return {"unit": unit, "file": file, "rows": sum(clips.values()), "node": "n1", "clips": clips,
            "ended": ended or {}, "failures": failures or []}


def test_a_unit_is_complete_only_when_every_clip_of_every_video_is_written_or_the_video_failed():
    unit = UnitProgress("k", {"a": "fa", "b": "fb", "c": "fc"})
    unit.add(_record("k", "part-1", {"a": 2, "b": 1}))
    assert not unit.complete
    unit.add(_record("k", None, {}, ended={"a": 3}))  # a has 3 clips, only 2 written so far
    unit.add(_record("k", None, {}, failures=[{"video_id": "c", "fingerprint": "fc", "error": "corrupt"}]))
    assert unit.finished_videos() == {"c"}
    unit.add(_record("k", "part-2", {"a": 1, "b": 1}, ended={"b": 2}))
    assert unit.complete and unit.encoded() == {"a": "fa", "b": "fb"}
    assert unit.files == [{"file": "part-1", "rows": 3}, {"file": "part-2", "rows": 2}] and unit.nodes == {"n1"}
    assert END_OF_VIDEO < 0


def test_encoder_pool_is_sized_from_the_cluster(monkeypatch):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    assert encoder_pool_size(ExtractConfig(encoder_cpus=2.0)) == 4
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 3.0})
    assert encoder_pool_size(ExtractConfig()) == 3  # one CPU per GPU actor by default
    assert encoder_pool_size(ExtractConfig(encoder_cpus=2.0)) == 2  # as many as the CPUs can place
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 8.0})
    assert encoder_pool_size(ExtractConfig()) == 8
    assert decode_slots(ExtractConfig(), encoder_actors=8) == 7  # the CPUs the GPU actors leave
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    assert encoder_pool_size(ExtractConfig()) == 1  # one two-thread actor on a 2-core machine
    assert encoder_pool_size(ExtractConfig(encoder_cpus=1.0)) == 2
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert encoder_pool_size(ExtractConfig()) == 1
    assert encoder_pool_size(ExtractConfig(max_encoder_actors=7)) == 7


def test_decode_slots_leave_the_encoders_and_the_writer_their_cpus(monkeypatch):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    assert decode_slots(ExtractConfig(), encoder_actors=1) == 1  # (4 - 2 - 0.25) // 1
    assert decode_slots(ExtractConfig(encoder_cpus=1.0), encoder_actors=2) == 1
    assert decode_slots(ExtractConfig(encoder_cpus=1.0, decode_cpus=0.5), encoder_actors=2) == 3
    assert decode_slots(ExtractConfig(encoder_cpus=2.0, decode_cpus=0.5), encoder_actors=1) == 3
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    assert decode_slots(ExtractConfig(), encoder_actors=1) == 1  # never none


def test_decode_groups_keep_order_cover_every_item_and_stay_small():
    items = [{"video_id": f"v{i:03d}"} for i in range(210)]
    groups = decode_groups(items, tasks_at_once=6)
    assert [item for group in groups for item in group] == items
    assert max(len(group) for group in groups) == 9 and len(groups) == 24  # about four groups per task at once
    assert max(len(group) for group in decode_groups(items * 100, tasks_at_once=2)) == 64
    assert decode_groups(items[:3], tasks_at_once=6) == [[item] for item in items[:3]]


def test_decode_batches_cut_clips_across_videos_into_full_batches(tmp_path):
    items = [{"video_id": f"v{i}", "fingerprint": f"f{i}", "unit": "u",
              "path": str(write_tiny_mp4(tmp_path / f"v{i}.mp4", seconds=3.0, seed=i))} for i in range(2)]
    items.append({"video_id": "gone", "fingerprint": "f", "unit": "u", "path": str(tmp_path / "gone.mp4")})
    sampling = SamplingConfig(clip_seconds=1.0, frames_per_clip=2).model_dump()
    batches = list(decode_batches(items, sampling, frame_size=32, resize="crop", batch_rows=4))

    rows = [(v, c) for batch in batches for v, c in zip(batch["video_id"], batch["clip_idx"])]
    assert [len(batch["clip_idx"]) for batch in batches] == [4, 4, 1]  # 3 clips + end row, twice; one failure row
    assert rows == [("v0", 0), ("v0", 1), ("v0", 2), ("v0", END_OF_VIDEO),
                    ("v1", 0), ("v1", 1), ("v1", 2), ("v1", END_OF_VIDEO), ("gone", -1)]
    assert all(batch["frames"].shape[1:] == (2, 32, 32, 3) and batch["frames"].dtype == np.uint8 for batch in batches)
    assert batches[0]["video_id"].dtype == object and batches[0]["thumbnail"].dtype == object
    assert batches[0]["clips"].tolist()[3] == 3 and batches[2]["error"][0]


def test_extraction_finishes_when_a_decoder_actor_finds_no_place(ray_instance, tmp_path):
    rows = [{"video_id": f"v{i}", "fingerprint": f"f{i}", "path": str(write_tiny_mp4(tmp_path / f"v{i}.mp4", seed=i))}
            for i in range(3)]
    extract = ExtractConfig(encoder_cpus=0.5, max_encoder_actors=1, unit_videos=2)
    assert min(decode_slots(extract, encoder_actors=1), len(rows)) == 3  # (4 - 0.5 - 0.25) // 1 decoder actors
    # The shared instance has 4 CPUs: with 2.25 held here, the encoder (0.5) and the writer (0.25) leave room for
    # one of the three; calls queued on the others would wait for ever.
    held = ray.util.placement_group([{"CPU": 2.25}])
    ray.get(held.ready(), timeout=60)
    try:
        result = extract_clip_features(
            rows, feature_dir=tmp_path / "features", encoder_config=ENCODER.model_copy(update={"device": "cpu"}),
            frame_size=64, embed_dim=64, sampling=SamplingConfig(frames_per_clip=2), extract=extract)
    finally:
        ray.util.remove_placement_group(held)
    assert result.failures == [] and result.videos_encoded == 3 and result.clips >= 3
    assert 0 < result.first_batch_seconds <= result.seconds


def test_only_store_settings_are_forwarded_to_cluster_workers():
    environ = {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://s3", "REELHASH_STORE": "s3://b/p",
               "HOME": "/root", "PATH": "/bin", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
    assert store_env_vars(environ) == {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://s3",
                                       "REELHASH_STORE": "s3://b/p", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}


def _batch(rows: list[tuple]) -> dict:
    """Encoder output rows (unit, video, clip_idx, clips, error) with 4-d embeddings equal to the clip index."""
    return {
        "unit": np.array([r[0] for r in rows]), "video_id": np.array([r[1] for r in rows]),
        "fingerprint": np.array(["fp"] * len(rows)), "clip_idx": np.array([r[2] for r in rows]),
        "t_start": np.zeros(len(rows)), "t_end": np.ones(len(rows)), "clips": np.array([r[3] for r in rows]),
        "error": np.array([r[4] for r in rows]),
        "embedding": np.array([[r[2]] * 4 for r in rows], np.float16),
        "thumbnail": np.array([f"jpeg-{r[1]}-{r[2]}".encode() if r[2] >= 0 else b"" for r in rows], dtype=object),
    }


def test_the_writer_writes_a_unit_in_one_part_once_complete_even_when_a_marker_overtakes_a_clip(tmp_path):
    writer = FeaturePartWriter(str(tmp_path), 4, {"u1": 2, "u2": 1}, rows_per_part=100)
    first = [json.loads(r) for r in writer.write(_batch([
        ("u1", "a", 0, 0, ""), ("u1", "a", END_OF_VIDEO, 2, ""),  # a's second clip is still in flight
        ("u1", "b", -1, 0, "corrupt"), ("u2", "c", 0, 0, "")]))["record"]]
    assert [r["file"] for r in first] == [None, None]  # nothing complete yet: nothing written
    second = [json.loads(r) for r in writer.write(_batch([
        ("u1", "a", 1, 0, ""), ("u2", "c", END_OF_VIDEO, 1, "")]))["record"]]
    by_unit = {r["unit"]: r for r in second}
    assert by_unit["u1"]["clips"] == {"a": 2} and by_unit["u2"]["clips"] == {"c": 1}
    part = pq.read_table(tmp_path / "run-u1" / by_unit["u1"]["file"])
    assert part["clip_idx"].to_pylist() == [0, 1] and part["video_id"].to_pylist() == ["a", "a"]
    assert part["thumbnail"].to_pylist() == [b"jpeg-a-0", b"jpeg-a-1"]  # each clip keeps its own thumbnail
    driver = UnitProgress("u1", {"a": "fp", "b": "fp"})
    for record in first[:1] + [by_unit["u1"]]:
        driver.add(record)
    assert driver.complete and driver.encoded() == {"a": "fp"} and list(driver.failures) == ["b"]


def test_the_writer_flushes_a_large_unit_in_parts_of_at_most_rows_per_part(tmp_path):
    writer = FeaturePartWriter(str(tmp_path), 4, {"u": 1}, rows_per_part=3)
    records = [json.loads(r) for r in writer.write(_batch([("u", "a", i, 0, "") for i in range(4)]))["record"]]
    assert records[0]["rows"] == 4  # the whole block once the limit is passed
    records = [json.loads(r) for r in writer.write(_batch([("u", "a", END_OF_VIDEO, 4, "")]))["record"]]
    assert records[0]["file"] is None and records[0]["ended"] == {"a": 4}


def test_a_prewarmed_pool_is_taken_over_by_the_run_it_was_started_for(ray_instance):
    extract = ExtractConfig(encoder_cpus=0.25, max_encoder_actors=1)
    encoder = ENCODER.model_copy(update={"device": "cpu"})
    prewarmed, name = start_prewarmed_pool(encoder, extract, token="t1")
    assert name == prewarmed_pool_name(encoder, pool_request(extract), "t1") and name.endswith("-t1")
    pool = start_encoder_pool(encoder, extract.model_copy(update={"prewarmed_pool": name}))
    try:
        assert [a._actor_id for a in pool.actors] == [a._actor_id for a in prewarmed.actors]
    finally:
        pool.shutdown(graceful=False)


def test_a_prewarmed_pool_for_another_encoder_is_stopped_and_a_new_pool_started(ray_instance):
    import time

    extract = ExtractConfig(encoder_cpus=0.25, max_encoder_actors=1)
    encoder = ENCODER.model_copy(update={"device": "cpu"})
    prewarmed, name = start_prewarmed_pool(encoder, extract, token="t2")
    other = encoder.model_copy(update={"random_seed": encoder.random_seed + 1})
    pool = start_encoder_pool(other, extract.model_copy(update={"prewarmed_pool": name}))
    try:
        assert pool.actors[0]._actor_id != prewarmed.actors[0]._actor_id
        deadline = time.monotonic() + 30
        while f"{name}-0" in ray.util.list_named_actors() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"{name}-0" not in ray.util.list_named_actors()
    finally:
        pool.shutdown(graceful=False)
