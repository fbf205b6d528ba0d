"""Train CLIP4Hashing and the LSH / ITQ baselines on paired embeddings and compare them.

Used by ``reelhash eval-features`` (real features, e.g. MSR-VTT CLIP features) and by
``benchmarks/clip4hashing_features.py`` (generated CLIP-like features). Every method gets the same
training pairs and is scored on the same evaluation set, next to the float cosine ranking, with
text-to-video and video-to-text R@1/5/10 and MdR (expected-rank tie policy, see ``retrieval.py``).

LSH and ITQ are fitted on the training embeddings of both modalities together (as the indexing
pipeline does). ITQ needs ``bits <= dim``; longer codes are reported as n/a (no PCA padding).

Ablations (``ablations=True``), all on the same training pairs:
- ``clip4hashing/sign-at-zero``: the trained network, bits = sign(h) instead of min-max thresholds;
- ``clip4hashing/eval-set-minmax``: min-max thresholds taken per modality over the evaluation set
  itself (the Karte0 protocol; transductive, so not usable for single queries);
- ``clip4hashing/cosine-target``: retrained with the plain cosine target instead of the dynamic weighting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from hashing.bits import check_bits, pack_bits
from hashing.hashers import make_hasher, save_hasher
from hashing.methods.clip4hashing.config import Clip4HashingConfig, Clip4HashingTrainOptions
from hashing.methods.clip4hashing.hasher import Clip4HashingHasher
from hashing.methods.clip4hashing.minmax import midrange_thresholds
from hashing.methods.clip4hashing.retrieval import TIE_POLICY, cross_modal_retrieval
from hashing.methods.clip4hashing.train import train_clip4hashing

BENCHMARK_BITS = (64, 128, 256, 512, 1024, 2048)
MethodName = Literal["clip4hashing", "lsh", "itq"]


class ComparisonOptions(pydantic.BaseModel):
    """Which methods, bit lengths and settings a comparison runs."""

    model_config = pydantic.ConfigDict(extra="forbid")

    bits: list[int] = pydantic.Field(default_factory=lambda: list(BENCHMARK_BITS))
    methods: list[MethodName] = pydantic.Field(default_factory=lambda: ["clip4hashing", "lsh", "itq"])
    ablations: bool = False
    cosine_target_bits: list[int] | None = pydantic.Field(
        default=None,
        description="Bit lengths at which the cosine-target ablation is retrained (it costs a second training); "
        "None = every bit length. The other ablations reuse the trained model and run at every bit length.",
    )
    clip4hashing: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Clip4HashingConfig fields other than n_bits and dim (e.g. hidden, c)."
    )
    train: Clip4HashingTrainOptions = Clip4HashingTrainOptions()
    seed: int = 0

    @pydantic.field_validator("bits")
    @classmethod
    def _valid_bits(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one bit length")
        for n_bits in value:
            check_bits(n_bits)
        return sorted(set(value))

    def clip4hashing_config(self, n_bits: int, dim: int, **changes: Any) -> Clip4HashingConfig:
        return Clip4HashingConfig(**{**self.clip4hashing, **changes, "n_bits": n_bits, "dim": dim})


@dataclass(frozen=True)
class PairedEvaluationSet:
    """Distinct videos, captions, and for each caption the row of its video."""

    videos: np.ndarray  # [V, D]
    texts: np.ndarray  # [T, D]
    video_of_text: np.ndarray  # int64 [T]


def group_pairs(video_rows: np.ndarray, text_rows: np.ndarray) -> PairedEvaluationSet:
    """Row-aligned pairs -> an evaluation set; identical video rows (one per caption) become one video."""
    video_rows, text_rows = np.asarray(video_rows), np.asarray(text_rows)
    if video_rows.ndim != 2 or video_rows.shape != text_rows.shape:
        raise ValueError(
            f"video and text matrices must have the same shape [N, D] (row i of text describes row i of video), "
            f"got {video_rows.shape} and {text_rows.shape}"
        )
    _, first, inverse = np.unique(video_rows, axis=0, return_index=True, return_inverse=True)
    # Keep the videos in order of first appearance so the gallery order follows the input.
    order = np.argsort(first, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return PairedEvaluationSet(video_rows[first[order]], text_rows, position[inverse.ravel()].astype(np.int64))


def compare_methods(
    train_video: np.ndarray,
    train_text: np.ndarray,
    evaluation: PairedEvaluationSet,
    options: ComparisonOptions,
    log: Callable[[str], None] | None = None,
    save_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train every method at every bit length and score it; returns a JSON-able dict.

    ``progress``: show a bar per CLIP4Hashing training run (epochs, loss) on stderr.

    ``save_dir``: also save each trained CLIP4Hashing model as ``<save_dir>/clip4hashing-<bits>b``
    (config.json with its metrics + weights.safetensors with the thresholds).
    """
    log = log or (lambda message: None)
    dim = evaluation.videos.shape[1]
    if np.asarray(train_video).shape[1] != dim:
        raise ValueError(f"training embeddings have width {np.asarray(train_video).shape[1]}, evaluation ones {dim}")
    pooled = np.concatenate([train_video, train_text])
    result: dict[str, Any] = {
        "tie_policy": TIE_POLICY,
        "n_train_pairs": int(len(train_video)),
        "n_eval_videos": int(len(evaluation.videos)),
        "n_eval_captions": int(len(evaluation.texts)),
        "dim": int(dim),
        "options": options.model_dump(),
        "float": cross_modal_retrieval(evaluation.videos, evaluation.texts, evaluation.video_of_text, "cosine"),
        "results": [],
    }
    rows: list[dict[str, Any]] = result["results"]

    def score(method: str, n_bits: int, video_codes: np.ndarray, text_codes: np.ndarray, **extra: Any) -> dict:
        metrics = cross_modal_retrieval(video_codes, text_codes, evaluation.video_of_text, "hamming")
        row = {"method": method, "bits": n_bits, **metrics, **extra}
        rows.append(row)
        log(f"{method:<30} {n_bits:>5} bits  T->V R@1 {metrics['t2v']['R@1']:5.1f}  V->T R@1 {metrics['v2t']['R@1']:5.1f}")
        return row

    for n_bits in options.bits:
        if "clip4hashing" in options.methods:
            config = options.clip4hashing_config(n_bits, dim)
            hasher, seconds, history = _train(train_video, train_text, config, options.train, progress)
            row = score("clip4hashing", n_bits, hasher.encode(evaluation.videos, "video"), hasher.encode(evaluation.texts, "text"),
                        train_seconds=seconds, final_loss=history["total"][-1])
            if save_dir is not None:
                save_hasher(hasher, Path(save_dir) / f"clip4hashing-{n_bits}b",
                            extra={"metrics": {"t2v": row["t2v"], "v2t": row["v2t"]}, "history": history})
            if options.ablations:
                video_out, text_out = hasher.project(evaluation.videos, "video"), hasher.project(evaluation.texts, "text")
                score("clip4hashing/sign-at-zero", n_bits, pack_bits(video_out > 0), pack_bits(text_out > 0))
                score("clip4hashing/eval-set-minmax", n_bits,
                      pack_bits(video_out > midrange_thresholds(video_out)),
                      pack_bits(text_out > midrange_thresholds(text_out)))
            if options.ablations and (options.cosine_target_bits is None or n_bits in options.cosine_target_bits):
                cosine, seconds, history = _train(
                    train_video, train_text, options.clip4hashing_config(n_bits, dim, target="cosine"), options.train,
                    progress,
                )
                score("clip4hashing/cosine-target", n_bits, cosine.encode(evaluation.videos, "video"),
                      cosine.encode(evaluation.texts, "text"), train_seconds=seconds, final_loss=history["total"][-1])
        for method in ("lsh", "itq"):
            if method not in options.methods:
                continue
            if method == "itq" and n_bits > dim:
                rows.append({"method": "itq", "bits": n_bits, "t2v": None, "v2t": None,
                             "note": f"n/a: ITQ needs bits <= embedding width ({dim}); not PCA-padded"})
                continue
            started = time.perf_counter()
            baseline = make_hasher(method, n_bits, seed=options.seed).fit(pooled)
            score(method, n_bits, baseline.encode(evaluation.videos, "video"), baseline.encode(evaluation.texts, "text"),
                  train_seconds=round(time.perf_counter() - started, 2))
    return result


def _train(
    video: np.ndarray, text: np.ndarray, config: Clip4HashingConfig, options: Clip4HashingTrainOptions,
    progress: bool = False,
) -> tuple[Clip4HashingHasher, float, dict[str, list[float]]]:
    started = time.perf_counter()
    hasher, history = train_clip4hashing(video, text, config, options, progress=progress)
    return hasher, round(time.perf_counter() - started, 2), history


def format_table(result: dict[str, Any]) -> str:
    """A markdown table: the float ranking, then every method and bit length."""
    header = (
        "| method | bits | T→V R@1 | R@5 | R@10 | MdR | V→T R@1 | R@5 | R@10 | MdR |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header, _table_row("float cosine", "—", result["float"])]
    for row in result["results"]:
        lines.append(_table_row(row["method"], str(row["bits"]), row if row["t2v"] is not None else None))
    return "\n".join(lines)


def _table_row(name: str, bits: str, metrics: dict[str, Any] | None) -> str:
    if metrics is None:
        return f"| {name} | {bits} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"
    cells = [
        f"{metrics[direction][key]:.1f}" if key != "MdR" else f"{metrics[direction][key]:g}"
        for direction in ("t2v", "v2t")
        for key in ("R@1", "R@5", "R@10", "MdR")
    ]
    return f"| {name} | {bits} | " + " | ".join(cells) + " |"
