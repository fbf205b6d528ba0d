"""Evaluate a collection's codes against its held-out captions and labels; write the run report.

The evaluation set is the collection's ``test`` split when it has one, else every video with a caption.
Videos are represented by their video-level embedding (mean of clip embeddings) and hashed with the run's
model; captions by their text embedding. Both directions are scored (caption → its video, video → its
caption), hash ranking next to the float cosine ranking; with labels also mAP@all under two relevance
rules: ``any`` (shares at least one label, the literature's convention) and ``exact`` (same label set).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from hashing.evaluation import (
    evaluate_retrieval,
    label_relevance,
    mean_average_precision,
    rank_matrix_cosine,
    rank_matrix_hamming,
)
from hashing.hashers import Hasher
from hashing.plots import plot_pr_curve, plot_precision_at_k
from pipeline.features import video_level_embeddings
from pipeline.shards import content_key
from pipeline.store import StoreLayout, as_path, atomic_write_json, atomic_write_text

MIN_EVAL_VIDEOS = 2


def evaluation_rows(catalog: pa.Table, encoded_video_ids: set[str]) -> tuple[list[dict], str]:
    """Catalog rows to evaluate on and the name of that set."""
    rows = [r for r in catalog.to_pylist() if r["status"] == "ok" and r["caption"] and r["video_id"] in encoded_video_ids]
    test_rows = [r for r in rows if (r.get("split") or "").lower() == "test"]
    if len(test_rows) >= MIN_EVAL_VIDEOS:
        return test_rows, "test split"
    return rows, "all captioned videos"


def multi_hot(label_lists: list[list[str] | None], vocabulary: list[str]) -> np.ndarray:
    position = {label: i for i, label in enumerate(vocabulary)}
    out = np.zeros((len(label_lists), len(vocabulary)), dtype=bool)
    for row, labels in enumerate(label_lists):
        for label in labels or []:
            out[row, position[label]] = True
    return out


def evaluate_codes(
    catalog: pa.Table,
    clip_features: pa.Table,
    text_embeddings: dict[str, np.ndarray],
    hasher: Hasher,
) -> dict:
    """Metrics of text→video and video→text retrieval on the evaluation set (JSON-able)."""
    video_ids, video_embeddings = video_level_embeddings(clip_features)
    by_id = dict(zip(video_ids, video_embeddings))
    rows, eval_set = evaluation_rows(catalog, set(video_ids))
    if len(rows) < MIN_EVAL_VIDEOS:
        return {"evaluated": False, "reason": f"fewer than {MIN_EVAL_VIDEOS} captioned videos were indexed"}
    videos = np.stack([by_id[r["video_id"]] for r in rows])
    texts = np.stack([text_embeddings[r["caption"]] for r in rows])
    video_codes, text_codes = hasher.encode(videos, modality="video"), hasher.encode(texts, modality="text")
    targets = np.arange(len(rows))
    label_lists = [r["labels"] for r in rows]
    has_labels = all(label_lists)
    labels = None
    if has_labels:
        vocabulary = sorted({label for labels in label_lists for label in labels})
        labels = multi_hot(label_lists, vocabulary)
    metrics: dict = {
        "evaluated": True,
        "eval_set": eval_set,
        # Which (video, caption) pairs were scored: the quality gate compares metrics only on the same set.
        "eval_set_key": content_key(sorted(f"{r['video_id']}:{r['caption']}" for r in rows)),
        "n_videos": len(rows),
        "code_bits": hasher.n_bits,
        "method": hasher.method,
        "tie_policy": "stable sort by (Hamming distance, gallery position); gallery in catalog (uri) order",
    }
    for direction, queries, gallery, q_float, g_float in (
        ("text_to_video", text_codes, video_codes, texts, videos),
        ("video_to_text", video_codes, text_codes, videos, texts),
    ):
        result = evaluate_retrieval(
            queries, gallery, q_float, g_float, targets=targets, query_labels=labels, gallery_labels=labels
        )
        if labels is not None:
            exact = label_relevance(labels, labels, rule="exact")
            result["hash"]["mAP@all_exact"] = mean_average_precision(rank_matrix_hamming(queries, gallery), exact)
            result["float"]["mAP@all_exact"] = mean_average_precision(rank_matrix_cosine(q_float, g_float), exact)
            result["chance"] = {
                "R@1": 100.0 / len(rows),
                "mAP@all_any": float(label_relevance(labels, labels, rule="any").mean()),
                "mAP@all_exact": float(label_relevance(labels, labels, rule="exact").mean()),
            }
        metrics[direction] = result
    return metrics


def headline(metrics: dict) -> dict[str, float]:
    """The few numbers shown in artifacts and manifests."""
    if not metrics.get("evaluated"):
        return {}
    out = {"eval_videos": metrics["n_videos"]}
    if "eval_set_key" in metrics:
        out["eval_set_key"] = metrics["eval_set_key"]
    for direction in ("text_to_video", "video_to_text"):
        for space in ("hash", "float"):
            for key in ("R@1", "R@5", "R@10", "MdR", "mAP@all"):
                value = metrics[direction].get(space, {}).get(key)
                if isinstance(value, (int, float)):
                    out[f"{direction}.{space}.{key}"] = round(float(value), 4)
    return out


EMBEDDABLE_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^()/:\s]+\.png)\)")


def report_markdown_for_ui(report_dir: str | Path) -> str:
    """``report.md`` with its plots inlined as ``data:`` URIs: the Prefect UI cannot open files beside the report,
    so relative image links render as broken images there. The file on disk keeps the relative links."""
    directory = as_path(report_dir)

    def inline(match: re.Match) -> str:
        path = directory / match.group(2)
        if not path.is_file():
            return match.group(0)
        return f"![{match.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')})"

    return EMBEDDABLE_IMAGE.sub(inline, (directory / "report.md").read_text(encoding="utf-8"))


def write_report(layout: StoreLayout, run_id: str, metrics: dict, context: dict) -> Path:
    """metrics.json, report.md and PNG plots under reports/<run_id>/; returns the directory."""
    directory = layout.reports_dir(run_id)
    atomic_write_json(directory / "metrics.json", {"context": context, "metrics": metrics})
    lines = [f"# reelhash run report — {run_id}", "", f"Written {dt.datetime.now(dt.timezone.utc).isoformat()}.", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items() if not isinstance(value, (dict, list))]
    lines.append("")
    if not metrics.get("evaluated"):
        lines.append(f"Not evaluated: {metrics.get('reason')}.")
    else:
        lines += [f"Evaluation set: {metrics['eval_set']} ({metrics['n_videos']} videos, {metrics['code_bits']}-bit "
                  f"{metrics['method']} codes). Ties: {metrics['tie_policy']}.", ""]
        lines += ["| direction | ranking | R@1 | R@5 | R@10 | MdR | mAP@all (any label) | mAP@all (exact labels) |",
                  "|---|---|---|---|---|---|---|---|"]
        for direction in ("text_to_video", "video_to_text"):
            result = metrics[direction]
            for space in ("hash", "float"):
                values = result.get(space, {})
                cells = [_fmt(values.get(key)) for key in ("R@1", "R@5", "R@10", "MdR", "mAP@all", "mAP@all_exact")]
                lines.append(f"| {direction} | {space} | " + " | ".join(cells) + " |")
            if "chance" in result:
                chance = result["chance"]
                lines.append(f"| {direction} | chance | {_fmt(chance['R@1'])} | | | | {_fmt(chance['mAP@all_any'])} | "
                             f"{_fmt(chance['mAP@all_exact'])} |")
        lines.append("")
        for direction in ("text_to_video", "video_to_text"):
            series = {f"{space} ({metrics['code_bits']} bits)" if space == "hash" else "float cosine":
                      metrics[direction][space]["P@K"] for space in ("hash", "float") if "P@K" in metrics[direction][space]}
            if series:
                png = plot_precision_at_k(series, directory / f"{direction}_precision_at_k.png", f"{direction}: precision@K")
                lines += [f"![{direction} precision@K]({png.name})", ""]
            if "pr_curve" in metrics[direction]["hash"]:
                png = plot_pr_curve({"hash": metrics[direction]["hash"]["pr_curve"]},
                                    directory / f"{direction}_pr_curve.png", f"{direction}: PR over Hamming radius")
                lines += [f"![{direction} PR curve]({png.name})", ""]
    atomic_write_text(directory / "report.md", "\n".join(lines) + "\n")
    return directory


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value))
