"""Tests for pipeline/features.py: float16 embedding columns, feature caches keyed by fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.features import (
    cached_fingerprints,
    clip_feature_dir,
    clip_feature_schema,
    embedding_array,
    embeddings_from_column,
    ensure_text_features,
    load_clip_features,
    load_text_features,
    sampling_tag,
    text_feature_dir,
    video_level_embeddings,
)
from pipeline.sampling import SamplingConfig
from pipeline.shards import ShardRunWriter, committed_runs
from pipeline.store import StoreLayout

DIM = 4


def _clip_table(clips: list[tuple[str, str, int, list[float]]]) -> pa.Table:
    """Rows (video_id, fingerprint, clip_idx, embedding) with 2-second clips."""
    return pa.table(
        {
            "video_id": [c[0] for c in clips],
            "fingerprint": [c[1] for c in clips],
            "clip_idx": pa.array([c[2] for c in clips], pa.int32()),
            "t_start": [2.0 * c[2] for c in clips],
            "t_end": [2.0 * c[2] + 2.0 for c in clips],
            "embedding": embedding_array(np.array([c[3] for c in clips], dtype=np.float32)),
        },
        schema=clip_feature_schema(DIM),
    )


def _commit_feature_run(feature_dir: Path, key: str, clips: list[tuple[str, str, int, list[float]]]) -> None:
    writer = ShardRunWriter(feature_dir, key)
    writer.write(_clip_table(clips))
    videos = sorted({(c[0], c[1]) for c in clips})
    writer.commit({"kind": "clip_features", "videos": videos})


def test_embedding_column_round_trip_is_float16_fixed_size_list():
    embeddings = np.array([[0.5, -1.0, 2.0, 0.125], [1 / 3, 0.0, -0.1, 65504.0]], dtype=np.float32)
    column = embedding_array(embeddings)
    assert column.type == pa.list_(pa.float16(), DIM)
    back = embeddings_from_column(column)
    assert back.dtype == np.float32 and back.shape == (2, DIM)
    np.testing.assert_array_equal(back, embeddings.astype(np.float16).astype(np.float32))
    # Chunked and sliced columns (what Parquet reads and table slices give) come back the same.
    chunked = pa.chunked_array([column.slice(0, 1), column.slice(1, 1)])
    np.testing.assert_array_equal(embeddings_from_column(chunked), back)
    np.testing.assert_array_equal(embeddings_from_column(column.slice(1, 1)), back[1:])


def test_feature_dirs_pin_encoder_collection_and_sampling(tmp_path):
    layout = StoreLayout(tmp_path)
    uniform = SamplingConfig()
    keyframe = SamplingConfig(mode="keyframe")
    assert clip_feature_dir(layout, "enc", "col", uniform).parent == tmp_path / "features" / "enc" / "col"
    assert sampling_tag(uniform).startswith("uniform-k8-s4-")
    assert sampling_tag(uniform) == sampling_tag(SamplingConfig())
    assert sampling_tag(uniform) != sampling_tag(keyframe)
    assert sampling_tag(uniform) != sampling_tag(SamplingConfig(max_clips_per_video=3))
    assert text_feature_dir(layout, "enc", "col") == tmp_path / "features" / "enc" / "col" / "text"


def test_cached_fingerprints_newest_run_wins(tmp_path):
    feature_dir = tmp_path / "features"
    _commit_feature_run(feature_dir, "old", [("a", "fp-a1", 0, [1, 0, 0, 0]), ("b", "fp-b1", 0, [0, 1, 0, 0])])
    _commit_feature_run(feature_dir, "new", [("a", "fp-a2", 0, [0, 0, 1, 0])])
    # An uncommitted run never counts.
    ShardRunWriter(feature_dir, "dead").write(_clip_table([("c", "fp-c", 0, [1, 1, 1, 1])]))
    assert cached_fingerprints(feature_dir) == {"a": "fp-a2", "b": "fp-b1"}
    assert cached_fingerprints(tmp_path / "nothing-here") == {}


def test_load_clip_features_picks_rows_of_matching_fingerprints(tmp_path):
    feature_dir = tmp_path / "features"
    _commit_feature_run(
        feature_dir,
        "old",
        [
            ("a", "fp-a1", 0, [1, 0, 0, 0]),
            ("a", "fp-a1", 1, [1, 1, 0, 0]),
            ("b", "fp-b1", 0, [0, 1, 0, 0]),
            ("c", "fp-c1", 0, [0, 0, 0, 1]),
        ],
    )
    _commit_feature_run(feature_dir, "new", [("a", "fp-a2", 0, [0, 0, 1, 0]), ("b", "fp-b2", 0, [0, 0, 2, 0])])

    # a: its old fingerprint (older run, both clips); b: its new one; c: not wanted; d: never extracted.
    table = load_clip_features(feature_dir, {"a": "fp-a1", "b": "fp-b2", "d": "fp-d"})
    assert table.column_names == clip_feature_schema(DIM).names
    assert list(zip(table["video_id"].to_pylist(), table["clip_idx"].to_pylist(), table["fingerprint"].to_pylist())) == [
        ("a", 0, "fp-a1"),
        ("a", 1, "fp-a1"),
        ("b", 0, "fp-b2"),
    ]
    np.testing.assert_array_equal(
        embeddings_from_column(table["embedding"]), np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0]], np.float32)
    )

    assert load_clip_features(feature_dir, {"a": "fp-other"}) is None
    assert load_clip_features(feature_dir, {}) is None


def test_video_level_embeddings_mean_then_normalise():
    table = _clip_table(
        [
            ("v2", "f", 0, [3, 0, 0, 0]),
            ("v1", "f", 0, [1, 0, 0, 0]),
            ("v2", "f", 1, [0, 4, 0, 0]),
            ("v1", "f", 1, [0, 1, 0, 0]),
            ("v3", "f", 0, [0, 0, 0, 2]),
        ]
    )
    video_ids, embeddings = video_level_embeddings(table)
    assert video_ids == ["v2", "v1", "v3"]  # order of first appearance
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(
        embeddings,
        [[0.6, 0.8, 0.0, 0.0], [2**-0.5, 2**-0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-6)


def test_ensure_text_features_encodes_only_missing_captions(tmp_path):
    text_dir = tmp_path / "text"
    calls: list[list[str]] = []

    def encode_text(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), 1.0, 0.5, -1.0] for t in texts], dtype=np.float32)

    first = ensure_text_features(text_dir, ["a dog", "a cat", "a dog"], encode_text, batch_size=1)
    assert calls == [["a cat"], ["a dog"]]  # unique, sorted, in batches of 1
    np.testing.assert_array_equal(first["a dog"], [5, 1, 0.5, -1])
    assert len(committed_runs(text_dir)) == 1

    calls.clear()
    second = ensure_text_features(text_dir, ["a cat", "a horse"], encode_text)
    assert calls == [["a horse"]]
    assert set(second) == {"a cat", "a horse"}
    np.testing.assert_array_equal(second["a cat"], first["a cat"])
    assert len(committed_runs(text_dir)) == 2

    calls.clear()
    cached = ensure_text_features(text_dir, ["a horse", "a dog"], encode_text)
    assert calls == []
    np.testing.assert_array_equal(cached["a horse"], second["a horse"])
    assert set(load_text_features(text_dir, ["a dog", "unknown"])) == {"a dog"}


@pytest.mark.parametrize("dim", [1, 512])
def test_clip_feature_schema_dims(dim):
    assert clip_feature_schema(dim).field("embedding").type.list_size == dim
