"""CLIP4Hashing training through the pipeline: cached CLIP features → one shared hash net → stored model.

Nothing is decoded: ``prepare`` needs the collection's cached clip and caption features for ``config.encoder``
and ``config.sampling`` (written by ``reelhash index`` with the same encoder options) and fails with the
command to run when they are missing. Training pairs are each video's video-level embedding (L2-normalised
mean of its clip embeddings) with its caption's embedding, from the catalog's non-``test`` videos (all videos
when there is no test split).

``train`` fits ``hashing.methods.clip4hashing`` (SGD defaults of ``Clip4HashingTrainOptions``) for one bit
length, evaluates it on the held-out test split exactly as ``index_collection`` evaluates a run (R@1/5/10 and
MdR both directions, next to float cosine; ``pipeline.evaluate.evaluate_codes``) and saves it as
``models/<model_id>/`` (safetensors weights with the frozen per-bit thresholds, the encoder config and
sampling, the training facts and headline metrics in ``config.json``, full metrics in ``metrics.json``).
``reelhash index --model ID`` and ``reelhash rehash --model ID --index NAME`` then hash with it.

``extra_report`` compares with ITQ and LSH fitted on the same training pairs at the same bit lengths.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from hashing.encoders import build_media_encoder
from hashing.hashers import Hasher
from hashing.methods.progress import EpochCallback
from pipeline.evaluate import headline
from pipeline.features import CollectionFeatures, load_collection_features, video_level_embeddings
from pipeline.models import fit_hasher, save_model, save_model_metrics
from pipeline.rehash import check_cached_features, evaluate_features, extract_command
from pipeline.store import StoreLayout
from pipeline.training.base import TrainedModel, TrainRunConfig

logger = logging.getLogger(__name__)

BASELINES = ("itq", "lsh")
# Set from the data, never by --set: the code length comes from --bits, the input width from the encoder.
FIXED_KEYS = frozenset({"n_bits", "dim"})
MIN_TRAINING_PAIRS = 2


@dataclass
class ResolvedOptions:
    model: dict[str, Any]  # Clip4HashingConfig fields except n_bits and dim
    train: dict[str, Any]  # Clip4HashingTrainOptions fields


def resolve_options(config: TrainRunConfig) -> ResolvedOptions:
    """Split ``config.options`` (``--set`` keys) between the model config and the train options."""
    from hashing.methods.clip4hashing.config import Clip4HashingConfig, Clip4HashingTrainOptions

    model_keys = set(Clip4HashingConfig.model_fields) - FIXED_KEYS
    train_keys = set(Clip4HashingTrainOptions.model_fields)
    fixed = sorted(set(config.options) & FIXED_KEYS)
    if fixed:
        raise ValueError(f"CLIP4Hashing option(s) {fixed} are set by the run (--bits, the encoder's embedding width); "
                         "remove them from --set")
    unknown = sorted(set(config.options) - model_keys - train_keys)
    if unknown:
        raise ValueError(f"unknown CLIP4Hashing option(s) {unknown}; known: {', '.join(sorted(model_keys | train_keys))}")
    train = {k: v for k, v in config.options.items() if k in train_keys}
    train.setdefault("seed", config.seed)
    options = ResolvedOptions(model={k: v for k, v in config.options.items() if k in model_keys}, train=train)
    Clip4HashingTrainOptions.model_validate(options.train)  # fail in prepare, not after the first bit length
    return options


# ------------------------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    """The collection's cached features and the paired training embeddings drawn from them."""

    features: CollectionFeatures
    rule: str  # which videos were used for training
    video_ids: list[str]
    video_embeddings: np.ndarray  # float32 [n, D], video-level (mean of clips, L2-normalised)
    text_embeddings: np.ndarray  # float32 [n, D], the paired captions

    @property
    def embed_dim(self) -> int:
        return int(self.video_embeddings.shape[1])


def training_rows(rows: list[dict]) -> tuple[list[dict], str]:
    """The videos to train on: every one outside the ``test`` split (all of them when there is none)."""
    kept = [r for r in rows if (r.get("split") or "").lower() != "test"]
    if len(kept) == len(rows):
        return rows, "all captioned videos (the catalog has no test split)"
    return kept, "captioned videos outside the test split"


def load_training_data(layout: StoreLayout, config: TrainRunConfig, encoder_id: str) -> TrainingData:
    """Cached features of the collection and its (video, caption) training pairs; never decodes."""
    check_cached_features(layout, config.collection, encoder_id=encoder_id, sampling=config.sampling,
                          how_to_extract=extract_command(config.collection, config.encoder, config.sampling))
    found = load_collection_features(layout, config.collection, encoder_id, config.sampling)
    video_ids, embeddings = video_level_embeddings(found.clips)
    by_id = dict(zip(video_ids, embeddings))
    usable = [r for r in found.catalog.to_pylist()
              if r["status"] == "ok" and r["caption"] and r["video_id"] in by_id and r["caption"] in found.texts]
    rows, rule = training_rows(usable)
    if len(rows) < MIN_TRAINING_PAIRS:
        raise ValueError(
            f"collection '{config.collection}' has {len(rows)} captioned training videos with cached features "
            f"({rule}); CLIP4Hashing learns from video–caption pairs and needs at least {MIN_TRAINING_PAIRS}: "
            "give the collection a manifest with a 'caption' column (and a 'split' column to hold out 'test' videos)"
        )
    return TrainingData(
        features=found,
        rule=rule,
        video_ids=[r["video_id"] for r in rows],
        video_embeddings=np.stack([by_id[r["video_id"]] for r in rows]).astype(np.float32),
        text_embeddings=np.stack([found.texts[r["caption"]] for r in rows]).astype(np.float32),
    )


def stored_encoder_config(config: TrainRunConfig, encoder_info: dict) -> BaseModel:
    """The run's encoder config with the checkpoint path made absolute, so the saved model loads from anywhere."""
    if getattr(config.encoder, "checkpoint_path", None) and encoder_info.get("checkpoint_path"):
        return config.encoder.model_copy(update={"checkpoint_path": encoder_info["checkpoint_path"]})
    return config.encoder


def evaluation_summary(metrics: dict) -> dict:
    """The small, JSON-able part of an evaluation: the set it ran on and the headline numbers."""
    if not metrics.get("evaluated"):
        return {"evaluated": False, "reason": metrics.get("reason")}
    return {"eval_set": metrics["eval_set"], "n_videos": metrics["n_videos"], **headline(metrics)}


# ------------------------------------------------------------------------------------------- method


class Clip4HashingTrainingMethod:
    name = "clip4hashing"

    def prepare(self, layout: StoreLayout, config: TrainRunConfig) -> dict[str, Any]:
        options = resolve_options(config)
        encoder = build_media_encoder(config.encoder)  # its id names the feature cache; weights errors say how to fix
        data = load_training_data(layout, config, encoder.encoder_id)
        return {
            "collection": config.collection,
            "encoder_id": encoder.encoder_id,
            "encoder": encoder.describe(),
            "embed_dim": data.embed_dim,
            "videos_with_features": len(data.features.videos),
            "train_pairs": len(data.video_ids),
            "train_rule": data.rule,
            "model_options": options.model,
            "train_options": options.train,
        }

    def train(self, layout: StoreLayout, config: TrainRunConfig, prepared: dict[str, Any], n_bits: int,
              on_epoch: EpochCallback | None = None) -> TrainedModel:
        from hashing.methods.clip4hashing.config import Clip4HashingConfig, Clip4HashingTrainOptions
        from hashing.methods.clip4hashing.train import train_clip4hashing

        started = time.monotonic()
        options = resolve_options(config)
        data = load_training_data(layout, config, prepared["encoder_id"])
        model_config = Clip4HashingConfig(n_bits=n_bits, dim=data.embed_dim, **options.model)
        hasher, history = train_clip4hashing(data.video_embeddings, data.text_embeddings, model_config,
                                             Clip4HashingTrainOptions(**options.train), on_epoch=on_epoch)
        train_seconds = time.monotonic() - started
        # Epoch choice on held-out pairs: kept with the metrics, left out of the loss plot (another scale).
        selection = {key: history.pop(key, []) for key in ("held_out_r1", "chosen_epoch", "cca_regularization")}
        metrics = evaluate_features(data.features, hasher)
        summary = evaluation_summary(metrics)
        model_id = save_model(layout, config.model_name(n_bits), hasher=hasher, encoder_config=stored_encoder_config(config, prepared["encoder"]),
                   encoder_info=prepared["encoder"], sampling=config.sampling, training={
                       "method": "clip4hashing", "collection": config.collection, "train_rule": data.rule,
                       "train_pairs": len(data.video_ids), "model_config": hasher.settings.model_dump(),
                       "train_options": options.train,
                       "final_loss": {k: v[-1] for k, v in history.items() if v},
                       "seconds": round(train_seconds, 1), "metrics": summary,
                       "epoch_selection": selection})
        save_model_metrics(layout, model_id, {"collection": config.collection, "train_rule": data.rule,
                                              **summary, "history": history, "evaluation": metrics})
        logger.info("clip4hashing %d bits: %d pairs, %.1f s, %s", n_bits, len(data.video_ids), train_seconds, summary)
        return TrainedModel(model_id=model_id, n_bits=n_bits, metrics=summary, history=history,
                            seconds=time.monotonic() - started)

    def extra_report(self, layout: StoreLayout, config: TrainRunConfig, prepared: dict[str, Any],
                     models: list[TrainedModel]) -> tuple[dict[str, Any], list[str]]:
        data = load_training_data(layout, config, prepared["encoder_id"])
        results: dict[str, dict[str, dict]] = {}
        for model in sorted(models, key=lambda m: m.n_bits):
            results[str(model.n_bits)] = {"clip4hashing": model.metrics}
            for method in BASELINES:
                results[str(model.n_bits)][method] = baseline_metrics(data, method, model.n_bits, config.seed)
        return {"baselines": results}, comparison_lines(results, prepared)


def baseline_metrics(data: TrainingData, method: str, n_bits: int, seed: int) -> dict:
    """An unsupervised baseline fitted on the same training pairs, scored on the same split."""
    try:
        hasher: Hasher = fit_hasher(method, n_bits, seed, data.video_embeddings, data.text_embeddings)
    except ValueError as error:
        return {"evaluated": False, "reason": str(error)}
    return evaluation_summary(evaluate_features(data.features, hasher))


COMPARED = [(direction, key) for direction in ("text_to_video", "video_to_text") for key in ("R@1", "R@5", "R@10", "MdR")]


def comparison_lines(results: dict[str, dict[str, dict]], prepared: dict) -> list[str]:
    """Markdown: CLIP4Hashing vs ITQ vs LSH per bit length, float cosine as the reference row."""
    lines = ["## CLIP4Hashing vs ITQ and LSH (same training pairs, same evaluation split)", "",
             f"Trained on {prepared['train_pairs']} video–caption pairs ({prepared['train_rule']}); "
             "ITQ and LSH are fitted on the same video and caption embeddings.", "",
             "| bits | method | " + " | ".join(f"{'t→v' if d == 'text_to_video' else 'v→t'} {k}" for d, k in COMPARED) + " |",
             "|---|---|" + "---|" * len(COMPARED)]
    float_row = None
    for bits, by_method in results.items():
        for method, metrics in by_method.items():
            if not metrics.get("evaluated", True):
                lines.append(f"| {bits} | {method} | n/a: {metrics.get('reason')} |" + " |" * (len(COMPARED) - 1))
                continue
            lines.append(f"| {bits} | {method} | " + " | ".join(_cell(metrics.get(f"{d}.hash.{k}")) for d, k in COMPARED) + " |")
            if float_row is None and "text_to_video.float.R@1" in metrics:
                float_row = "| – | float cosine | " + " | ".join(_cell(metrics.get(f"{d}.float.{k}")) for d, k in COMPARED) + " |"
    if float_row:
        lines.append(float_row)
    eval_set = next((m.get("eval_set") for by in results.values() for m in by.values() if m.get("eval_set")), None)
    if eval_set:
        lines += ["", f"Evaluation set: {eval_set}. R@K in %, MdR = median rank (lower is better)."]
    return lines + [""]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return "–" if value is None else str(value)


METHOD = Clip4HashingTrainingMethod()
