"""Tests for pipeline/codes.py: packed code shards, idempotent committed runs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hashing.bits import codes_from_arrow
from hashing.hashers import make_hasher
from pipeline.codes import code_schema, codes_run_key, read_code_run, write_code_run
from pipeline.features import clip_feature_schema, embedding_array, embeddings_from_column
from pipeline.shards import committed_runs
from pipeline.store import StoreLayout

DIM = 8


def _clip_features(n_videos: int, clips_per_video: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = n_videos * clips_per_video
    return pa.table(
        {
            "video_id": [f"v{i // clips_per_video}" for i in range(n)],
            "fingerprint": [f"fp{i // clips_per_video}" for i in range(n)],
            "clip_idx": pa.array([i % clips_per_video for i in range(n)], pa.int32()),
            "t_start": [4.0 * (i % clips_per_video) for i in range(n)],
            "t_end": [4.0 * (i % clips_per_video) + 4.0 for i in range(n)],
            "embedding": embedding_array(rng.standard_normal((n, DIM)).astype(np.float32)),
        },
        schema=clip_feature_schema(DIM),
    )


def _videos(table: pa.Table) -> dict[str, str]:
    return dict(zip(table["video_id"].to_pylist(), table["fingerprint"].to_pylist()))


@pytest.mark.parametrize("bits", [16, 24, 64])
def test_code_schema_is_fixed_size_binary(bits):
    schema = code_schema(bits)
    assert schema.field("code").type == pa.binary(bits // 8)
    assert pa.types.is_fixed_size_binary(schema.field("code").type)
    assert schema.metadata[b"code_bits"] == str(bits).encode()


def test_codes_equal_hasher_encode_and_are_stored_fixed_size(tmp_path):
    layout = StoreLayout(tmp_path)
    features = _clip_features(n_videos=5, clips_per_video=3)
    embeddings = embeddings_from_column(features["embedding"])
    hasher = make_hasher("lsh", 24, seed=1).fit(embeddings)

    run = write_code_run(
        layout, model_id="m1", collection="col", hasher=hasher, clip_features=features,
        videos=_videos(features), rows_per_shard=4,
    )
    assert run.written
    assert run.run_dir.parent == layout.codes_dir("m1", "col")
    assert run.manifest["code_bits"] == 24 and run.manifest["rows"] == 15
    assert [f["rows"] for f in run.manifest["files"]] == [4, 4, 4, 3]
    assert run.manifest["videos"] == sorted(_videos(features).items())

    on_disk = pq.read_table(run.run_dir / run.manifest["files"][0]["file"])
    assert on_disk.schema.field("code").type == pa.binary(3)

    table = read_code_run(run.run_dir, run.manifest)
    assert table.num_rows == 15
    np.testing.assert_array_equal(codes_from_arrow(table["code"]), hasher.encode(embeddings))
    assert table["video_id"].to_pylist() == features["video_id"].to_pylist()
    assert table["clip_idx"].to_pylist() == features["clip_idx"].to_pylist()
    assert table["t_end"].to_pylist() == features["t_end"].to_pylist()


def test_second_write_is_idempotent(tmp_path):
    layout = StoreLayout(tmp_path)
    features = _clip_features(n_videos=3, clips_per_video=2)
    hasher = make_hasher("lsh", 16, seed=0).fit(embeddings_from_column(features["embedding"]))
    kwargs = dict(model_id="m", collection="col", hasher=hasher, clip_features=features, videos=_videos(features))

    first = write_code_run(layout, **kwargs)
    part = first.run_dir / first.manifest["files"][0]["file"]
    mtime = part.stat().st_mtime_ns
    second = write_code_run(layout, **kwargs)

    assert first.written and not second.written
    assert second.run_dir == first.run_dir
    # The manifest read back from disk is the committed one (JSON: pairs come back as lists).
    assert second.manifest == json.loads(json.dumps(first.manifest))
    assert part.stat().st_mtime_ns == mtime
    assert len(committed_runs(layout.codes_dir("m", "col"))) == 1


def test_run_key_changes_with_model_or_fingerprints():
    videos = {"a": "fp1", "b": "fp2"}
    assert codes_run_key("m", videos) == codes_run_key("m", dict(reversed(list(videos.items()))))
    assert codes_run_key("m", videos) != codes_run_key("other", videos)
    assert codes_run_key("m", videos) != codes_run_key("m", {"a": "fp1", "b": "fp2-changed"})


def test_changed_collection_writes_a_new_run(tmp_path):
    layout = StoreLayout(tmp_path)
    features = _clip_features(n_videos=2, clips_per_video=2)
    hasher = make_hasher("lsh", 16).fit(embeddings_from_column(features["embedding"]))
    first = write_code_run(layout, model_id="m", collection="c", hasher=hasher, clip_features=features,
                           videos=_videos(features))
    changed = {**_videos(features), "v1": "fp1-new"}
    second = write_code_run(layout, model_id="m", collection="c", hasher=hasher, clip_features=features,
                            videos=changed)
    assert second.written and second.run_dir != first.run_dir
    assert len(committed_runs(layout.codes_dir("m", "c"))) == 2


def test_empty_features_give_an_empty_committed_run(tmp_path):
    layout = StoreLayout(tmp_path)
    features = _clip_features(n_videos=2, clips_per_video=1)
    hasher = make_hasher("lsh", 32).fit(embeddings_from_column(features["embedding"]))
    run = write_code_run(layout, model_id="m", collection="c", hasher=hasher,
                         clip_features=features.slice(0, 0), videos={})
    table = read_code_run(run.run_dir, run.manifest)
    assert table.num_rows == 0
    assert table.schema.field("code").type == pa.binary(4)
