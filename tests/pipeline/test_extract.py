"""Unit tests of pipeline/extract.py's bookkeeping (the Ray pipeline itself runs in the e2e tests): units, their
completion from workers' records, the encoder pool size from the cluster."""

from __future__ import annotations

import ray

from hashing.encoders import OpenClipEncoderConfig
from pipeline.extract import END_OF_VIDEO, ExtractConfig, UnitProgress, encoder_pool_size, plan_units
from pipeline.ray_runtime import store_env_vars
from pipeline.sampling import SamplingConfig

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
    assert encoder_pool_size(ExtractConfig()) == 3
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert encoder_pool_size(ExtractConfig()) == 1
    assert encoder_pool_size(ExtractConfig(max_encoder_actors=7)) == 7


def test_only_store_settings_are_forwarded_to_cluster_workers():
    environ = {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://s3", "REELHASH_STORE": "s3://b/p",
               "HOME": "/root", "PATH": "/bin", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
    assert store_env_vars(environ) == {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://s3",
                                       "REELHASH_STORE": "s3://b/p", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
