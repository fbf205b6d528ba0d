"""The store on a real S3-compatible server (SeaweedFS on the loopback, signed requests): the same code paths as
on local disk — commit objects, shard runs, index versions, models, locks and gc — with nothing renamed."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pyarrow as pa
import pytest

from hashing.bits import codes_to_arrow
from hashing.files import holds_files, as_path, atomic_write_bytes, create_exclusive, object_etag, replace_if_unchanged
from hashing.encoders import OpenClipEncoderConfig
from hashing.hashers import make_hasher
from pipeline.codes import code_schema
from pipeline.errors import IndexBusyError
from pipeline.gc import collect_garbage
from pipeline.locks import lease_is_held, lease_lock
from pipeline.models import load_model, save_model
from pipeline.publish import CollectionCodes, current_version, list_versions, publish_index, rollback, with_catalog_columns
from pipeline.sampling import SamplingConfig
from pipeline.search import PublishedIndex
from pipeline.shards import ShardRunWriter, committed_runs, read_run
from pipeline.store import StoreLayout, read_json

ENCODER_CONFIG = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, random_seed=5)
SAMPLING = SamplingConfig(mode="keyframe", frames_per_clip=4, clip_seconds=2.0)


def _codes(n: int, seed: int) -> pa.Table:
    packed = np.random.default_rng(seed).integers(0, 256, (n, 2), dtype=np.uint8)
    return pa.table({"video_id": [f"v{i}" for i in range(n)], "clip_idx": pa.array([0] * n, pa.int32()),
                     "t_start": [0.0] * n, "t_end": [1.0] * n, "code": codes_to_arrow(packed)}, schema=code_schema(16))


def _catalog(n: int) -> pa.Table:
    return pa.table({"video_id": [f"v{i}" for i in range(n)], "uri": [f"v{i}.mp4" for i in range(n)],
                     "caption": [f"c{i}" for i in range(n)], "labels": pa.array([None] * n, pa.list_(pa.string()))})


def test_layout_of_a_uri_store_stays_in_the_object_store(s3_prefix):
    layout = StoreLayout.from_option(f"{s3_prefix}/prod/")
    assert not layout.is_local and layout.uri == f"{s3_prefix}/prod"
    assert str(layout.index_version_dir("main", 3)) == f"{s3_prefix}/prod/index/main/v3"
    assert layout.relative(layout.current_pointer("main")) == "index/main/CURRENT"
    assert str(layout.location("codes/m/c/run-1")) == f"{s3_prefix}/prod/codes/m/c/run-1"


def test_exclusive_create_and_conditional_replace_are_honoured(s3_prefix):
    path = as_path(f"{s3_prefix}/x/commit.json")
    assert create_exclusive(path, b"first") is True
    assert create_exclusive(path, b"second") is False
    assert path.read_bytes() == b"first"
    etag = object_etag(path)
    assert replace_if_unchanged(path, b"third", '"0000"') is False
    assert replace_if_unchanged(path, b"third", etag) is True
    assert path.read_bytes() == b"third" and replace_if_unchanged(path, b"fourth", etag) is False
    atomic_write_bytes(path, b"plain put")
    assert path.read_bytes() == b"plain put"


def test_two_writers_of_one_shard_run_leave_exactly_the_first_commit(s3_prefix):
    set_dir = as_path(f"{s3_prefix}/codes/m/col")
    first, second = ShardRunWriter(set_dir, "same"), ShardRunWriter(set_dir, "same")
    first.write(_codes(3, 0))
    second.write(_codes(3, 0))
    assert committed_runs(set_dir) == []
    committed = second.commit({"by": "second"})
    assert first.commit({"by": "first"}) == json.loads(json.dumps(committed))
    [(run_dir, manifest)] = committed_runs(set_dir)
    assert manifest["by"] == "second" and read_run(run_dir, manifest).num_rows == 3
    assert sorted(p.name for p in run_dir.iterdir()) == ["_MANIFEST.json", f"part-{second.writer_id}-00000.parquet"]


def test_publish_search_and_rollback_in_an_object_store(s3_prefix):
    layout = StoreLayout.from_option(f"{s3_prefix}/store")
    for seed in (1, 2):
        writer = ShardRunWriter(layout.codes_dir("m", "col"), f"k{seed}")
        writer.write(_codes(5, seed))
        writer.commit({})
        result = publish_index(layout, "main", model_id="m", code_bits=16, metrics={}, model_info={},
                               collections=[CollectionCodes("col", layout.relative(writer.run_dir),
                                                            with_catalog_columns(_codes(5, seed), _catalog(5)))])
        assert result.published and result.version == seed
    index = PublishedIndex.open(layout, "main")
    assert index.version == 2 and sum(len(shard) for shard in index.shards) == 5
    assert rollback(layout, "main") == (2, 1) and current_version(layout, "main") == 1
    assert PublishedIndex.open(layout, "main").manifest["collections"]["col"]["codes_run"].endswith("run-k1")


def test_models_are_saved_and_loaded_from_an_object_store(s3_prefix):
    layout = StoreLayout.from_option(f"{s3_prefix}/store")
    hasher = make_hasher("lsh", 16, seed=3).fit(np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32))
    model_id = save_model(layout, "m1", hasher=hasher, encoder_config=ENCODER_CONFIG,
                          encoder_info={"encoder_id": "tiny"}, sampling=SAMPLING, training={})
    again = save_model(layout, "m1", hasher=hasher, encoder_config=ENCODER_CONFIG,
                       encoder_info={"encoder_id": "tiny"}, sampling=SAMPLING, training={})
    assert again == model_id
    model = load_model(layout, "m1")
    queries = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    assert model.model_id == model_id and np.array_equal(model.hasher.encode(queries), hasher.encode(queries))


def _hold_lease(uri: str, ready, release) -> None:
    with lease_lock(as_path(uri), what="index 'main'", holder="holder-process", lease_seconds=3.0):
        ready.set()
        release.wait(60)


def test_a_lease_is_exclusive_across_processes_names_its_holder_and_expires_when_the_holder_dies(s3_prefix):
    uri = f"{s3_prefix}/index/main/.run.lock"
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lease, args=(uri, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        time.sleep(1.5)  # past a heartbeat: the holder keeps its lease alive
        assert lease_is_held(as_path(uri))
        with pytest.raises(IndexBusyError, match="holder-process"):
            with lease_lock(as_path(uri), what="index 'main'", wait_seconds=0.2):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    assert read_json(as_path(uri))["holder"] == "holder-process"  # left behind by the killed holder
    started = time.monotonic()
    with lease_lock(as_path(uri), what="index 'main'", wait_seconds=30, holder="next"):
        waited = time.monotonic() - started
        assert read_json(as_path(uri))["holder"] == "next"
    assert waited < 10 and not as_path(uri).exists()


def test_gc_removes_what_killed_writers_left_in_an_object_store(s3_prefix):
    layout = StoreLayout.from_option(f"{s3_prefix}/store")
    done = ShardRunWriter(layout.codes_dir("m", "col"), "done")
    done.write(_codes(2, 0))
    done.commit({})
    ShardRunWriter(layout.codes_dir("m", "col"), "dead").write(_codes(2, 1))
    loser = ShardRunWriter(layout.codes_dir("m", "col"), "done")
    loser.write(_codes(2, 0))  # killed before its commit attempt: an unlisted part in a committed run
    atomic_write_bytes(layout.index_version_dir("main", 4) / "shard-00000.faissbin", b"half a publish")
    report = collect_garbage(layout)
    removed = {item["path"] for item in report.removed}
    assert removed == {"codes/m/col/run-dead", f"codes/m/col/run-done/part-{loser.writer_id}-00000.parquet",
                       "index/main/v4"}
    assert [manifest["run_key"] for _, manifest in committed_runs(layout.codes_dir("m", "col"))] == ["done"]
    assert not holds_files(layout.index_version_dir("main", 4))
    assert collect_garbage(layout).removed == []


def _publish_rounds(store: str, writer: int, rounds: int, prefect_api_url: str) -> None:
    if prefect_api_url:
        os.environ["PREFECT_API_URL"] = prefect_api_url
    layout = StoreLayout.from_option(store)
    for number in range(rounds):
        key = f"w{writer}-r{number}"
        run = ShardRunWriter(layout.codes_dir("m", "col"), key)
        codes = _codes(3, 100 * writer + number)
        run.write(codes)
        run.commit({})
        publish_index(layout, "main", model_id="m", code_bits=16, metrics={"writer": writer, "round": number},
                      model_info={}, collections=[CollectionCodes("col", layout.relative(run.run_dir),
                                                                  with_catalog_columns(codes, _catalog(3)))])


@pytest.mark.parametrize("lock", ["lease", "prefect"])
def test_two_processes_publishing_to_one_s3_index_are_serialised_and_lose_no_version(s3_prefix, lock, request):
    api_url = ""
    if lock == "prefect":
        request.getfixturevalue("prefect_api")
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    store, rounds = f"{s3_prefix}/store", 2
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_publish_rounds, args=(store, writer, rounds, api_url)) for writer in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(300)
    assert [writer.exitcode for writer in writers] == [0, 0]
    layout = StoreLayout.from_option(store)
    versions = list_versions(layout, "main")
    assert versions == list(range(1, 2 * rounds + 1)) and current_version(layout, "main") == 2 * rounds
    published = [read_json(layout.index_version_dir("main", v) / "manifest.json")["metrics"] for v in versions]
    # Every publish got its own version; each writer's rounds appear in its own order.
    assert sorted((m["writer"], m["round"]) for m in published) == [(w, r) for w in (1, 2) for r in range(rounds)]
    for writer in (1, 2):
        assert [m["round"] for m in published if m["writer"] == writer] == list(range(rounds))
