"""Tests for pipeline/evaluate.py: evaluation set, hash vs float metrics, the run report."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from hashing.hashers import make_hasher
from pipeline.evaluate import evaluate_codes, evaluation_rows, headline, multi_hot, write_report
from pipeline.features import clip_feature_schema, embedding_array, video_level_embeddings
from pipeline.store import StoreLayout

DIM = 8
_E = np.eye(DIM)
# Three pairs of videos; within a pair the two are close (cos 0.8) and share a label, across pairs they are
# orthogonal. Dimension 7 is left free for the clip offsets below.
VIDEO_EMBEDDINGS = {
    "v0": _E[0], "v1": 0.8 * _E[0] + 0.6 * _E[1],
    "v2": _E[2], "v3": 0.8 * _E[2] + 0.6 * _E[3],
    "v4": _E[4], "v5": 0.8 * _E[4] + 0.6 * _E[5],
}
LABELS = {"v0": ["a"], "v1": ["a"], "v2": ["b"], "v3": ["b"], "v4": ["c"], "v5": ["c"]}


def _catalog(rows: list[dict]) -> pa.Table:
    defaults = {"status": "ok", "caption": None, "labels": None, "split": None}
    rows = [{**defaults, **row} for row in rows]
    return pa.table(
        {
            "video_id": [r["video_id"] for r in rows],
            "status": [r["status"] for r in rows],
            "caption": pa.array([r["caption"] for r in rows], pa.string()),
            "labels": pa.array([r["labels"] for r in rows], pa.list_(pa.string())),
            "split": pa.array([r["split"] for r in rows], pa.string()),
        }
    )


def _clip_features(video_ids: list[str]) -> pa.Table:
    """Two clips per video, offset by ±0.25 along the free dimension, so the clip mean is the video embedding."""
    rows = [(v, i, VIDEO_EMBEDDINGS[v] + sign * 0.25 * _E[7]) for v in video_ids for i, sign in enumerate((1, -1))]
    return pa.table(
        {
            "video_id": [r[0] for r in rows],
            "fingerprint": ["fp"] * len(rows),
            "clip_idx": pa.array([r[1] for r in rows], pa.int32()),
            "t_start": [4.0 * r[1] for r in rows],
            "t_end": [4.0 * r[1] + 4.0 for r in rows],
            "embedding": embedding_array(np.stack([r[2] for r in rows]).astype(np.float32)),
        },
        schema=clip_feature_schema(DIM),
    )


@pytest.fixture
def perfect_case():
    """Captions whose text embedding equals their video's embedding, so every code pair matches exactly."""
    videos = list(VIDEO_EMBEDDINGS)
    catalog = _catalog(
        [{"video_id": v, "caption": f"caption {v}", "labels": LABELS[v], "split": "test"} for v in videos]
        + [
            {"video_id": "train0", "caption": "train caption", "labels": ["a"], "split": "train"},
            {"video_id": "broken", "status": "failed", "caption": "broken caption", "split": "test"},
            {"video_id": "silent", "caption": None, "split": "test"},
        ]
    )
    features = _clip_features(videos)
    video_ids, embeddings = video_level_embeddings(features)
    texts = {f"caption {v}": e for v, e in zip(video_ids, embeddings)}
    hasher = make_hasher("lsh", 64, seed=0).fit(embeddings)
    return catalog, features, texts, hasher


def test_evaluation_rows_prefer_the_test_split():
    catalog = _catalog(
        [
            {"video_id": "a", "caption": "x", "split": "TEST"},
            {"video_id": "b", "caption": "y", "split": "test"},
            {"video_id": "c", "caption": "z", "split": "train"},
            {"video_id": "d", "caption": "w", "split": "test"},  # not encoded
            {"video_id": "e", "caption": None, "split": "test"},
            {"video_id": "f", "caption": "v", "split": "test", "status": "failed"},
        ]
    )
    encoded = {"a", "b", "c", "e", "f"}
    rows, name = evaluation_rows(catalog, encoded)
    assert name == "test split" and [r["video_id"] for r in rows] == ["a", "b"]

    # With fewer than two test videos every captioned, encoded, ok video is used.
    rows, name = evaluation_rows(catalog, {"a", "c"})
    assert name == "all captioned videos" and [r["video_id"] for r in rows] == ["a", "c"]


def test_multi_hot():
    np.testing.assert_array_equal(
        multi_hot([["b"], ["a", "c"], None, []], ["a", "b", "c"]),
        [[False, True, False], [True, False, True], [False, False, False], [False, False, False]],
    )


def test_perfect_codes_give_perfect_scores(perfect_case):
    catalog, features, texts, hasher = perfect_case
    metrics = evaluate_codes(catalog, features, texts, hasher)

    assert metrics["evaluated"] is True
    assert metrics["eval_set"] == "test split" and metrics["n_videos"] == 6
    assert metrics["code_bits"] == 64 and metrics["method"] == "lsh"
    for direction in ("text_to_video", "video_to_text"):
        result = metrics[direction]
        for space in ("hash", "float"):
            assert result[space]["R@1"] == 100.0, (direction, space)
            assert result[space]["MdR"] == 1.0
            # Each video's pair partner (same label) is its second nearest neighbour in both spaces.
            assert result[space]["mAP@all"] == pytest.approx(1.0)
        assert result["hash"]["mAP@all_exact"] == pytest.approx(1.0)
        assert result["chance"]["R@1"] == pytest.approx(100 / 6)
        assert result["chance"]["mAP@all_any"] == pytest.approx(1 / 3)
    # JSON-able as is.
    assert json.loads(json.dumps(metrics)) == metrics

    numbers = headline(metrics)
    assert numbers["text_to_video.hash.R@1"] == 100.0
    assert numbers["video_to_text.float.mAP@all"] == 1.0
    assert numbers["eval_videos"] == 6
    assert all(isinstance(v, float) for k, v in numbers.items() if k not in ("eval_videos", "eval_set_key"))
    assert numbers["eval_set_key"] == metrics["eval_set_key"] and len(numbers["eval_set_key"]) == 16


def test_without_labels_there_is_no_map(perfect_case):
    catalog, features, texts, hasher = perfect_case
    unlabelled = catalog.set_column(
        catalog.schema.get_field_index("labels"), "labels", pa.nulls(catalog.num_rows, pa.list_(pa.string()))
    )
    metrics = evaluate_codes(unlabelled, features, texts, hasher)
    assert metrics["text_to_video"]["hash"]["R@1"] == 100.0
    assert "mAP@all" not in metrics["text_to_video"]["hash"]
    assert "chance" not in metrics["text_to_video"]


def test_too_few_videos_is_not_evaluated(perfect_case):
    catalog, features, texts, hasher = perfect_case
    metrics = evaluate_codes(catalog, _clip_features(["v0"]), texts, hasher)
    assert metrics == {"evaluated": False, "reason": "fewer than 2 captioned videos were indexed"}
    assert headline(metrics) == {}


def test_write_report_writes_metrics_report_and_plots(tmp_path, perfect_case):
    layout = StoreLayout(tmp_path)
    metrics = evaluate_codes(*perfect_case)
    context = {"collection": "col", "videos": 6, "nested": {"skipped": True}}
    directory = write_report(layout, "run-1", metrics, context)

    assert directory == layout.reports_dir("run-1")
    saved = json.loads((directory / "metrics.json").read_text())
    assert saved == {"context": context, "metrics": metrics}

    report = (directory / "report.md").read_text()
    assert report.startswith("# reelhash run report — run-1")
    assert "- **collection**: col" in report and "nested" not in report
    assert "| text_to_video | hash | 100.000 |" in report
    assert "| video_to_text | chance |" in report

    pngs = sorted(p.name for p in directory.glob("*.png"))
    assert pngs == [
        "text_to_video_pr_curve.png",
        "text_to_video_precision_at_k.png",
        "video_to_text_pr_curve.png",
        "video_to_text_precision_at_k.png",
    ]
    for name in pngs:
        assert (directory / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report


def test_write_report_when_not_evaluated(tmp_path):
    directory = write_report(StoreLayout(tmp_path), "run-2", {"evaluated": False, "reason": "no captions"}, {})
    assert "Not evaluated: no captions." in (directory / "report.md").read_text()
    assert list(directory.glob("*.png")) == []
