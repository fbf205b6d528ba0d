"""DSMHN training through the pipeline: decoded-clip cache → supervised two-stream model → stored model.

``prepare`` needs a cataloged collection (run ``reelhash index`` once first: it writes the catalog and is the
only step that reads the collection's source). It decodes the clips of every ok, captioned and labelled
video into the clip cache (``pipeline/clip_cache.py``, Ray Data; cached videos are never decoded twice) at
the model's frame size and fixes the split: the catalog's ``split`` column (``test`` rows are held out, all
others train), or, when no row is ``test``, a deterministic 20 % chosen by a hash of the video id.

``train`` fits one model per bit length on the train clips (each clip paired with its video's caption and
labels) and saves it as ``models/<model_id>/``: the DSMHN streams under ``streams/`` (safetensors + config),
a ``sign`` hasher and the ``dsmhn`` encoder config, so ``reelhash index --model <model_id>`` hashes a
collection with it and ``reelhash search`` encodes text queries with its text stream. It then evaluates the
saved model on the held-out videos exactly as the index flow would (video code = sign of the mean clip
output; caption code = sign of the text output) and writes ``metrics.json`` next to the model.

``extra_report`` adds the ablation — the 3-D video stream against a 2-D per-frame stream with mean pooling,
trained identically, compared on mAP over the motion labels — and, when the store holds open_clip features
of the collection, ITQ on those features as a baseline.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pydantic

from hashing.encoders import build_media_encoder
from hashing.evaluation import evaluate_retrieval, label_relevance, mean_average_precision, rank_matrix_hamming
from hashing.hashers import make_hasher
from hashing.methods.progress import EpochCallback
from pipeline.catalog import all_captions, read_catalog
from pipeline.clip_cache import ensure_clip_cache, load_clips
from pipeline.evaluate import multi_hot
from pipeline.features import embedding_array, embeddings_from_column, load_collection_features, video_level_embeddings
from pipeline.models import STREAMS_DIR, new_model_staging, save_model, save_model_metrics
from pipeline.plan import ok_rows
from pipeline.ray_runtime import ensure_ray
from pipeline.shards import committed_runs, content_key
from pipeline.store import StoreLayout
from pipeline.training.base import TrainedModel, TrainRunConfig

logger = logging.getLogger(__name__)

MOTION_PREFIX = "motion:"
ABLATION_PREFERRED_BITS = 64
# Columns of the report's tables (keys of ``headline``); the chance row uses ``chance.<second part>``.
BITS_TABLE_KEYS = ("text_to_video.mAP_any", "text_to_video.mAP_exact", "video_to_text.mAP_any",
                   "video_to_text.mAP_exact", "text_to_video.R@1", "video_to_text.R@1")
ABLATION_TABLE_KEYS = ("text_to_video.motion_mAP", "video_to_text.motion_mAP", "text_to_video.mAP_any",
                       "text_to_video.mAP_exact", "video_to_text.mAP_any", "video_to_text.mAP_exact")


class DsmhnRunOptions(pydantic.BaseModel):
    """Options of the pipeline side; every other ``--set`` key goes to ``DsmhnConfig`` / ``DsmhnTrainOptions``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    holdout_fraction: float = pydantic.Field(
        default=0.2, gt=0, lt=1, description="Share of videos held out when the catalog has no 'test' split."
    )
    ablation: bool = pydantic.Field(default=True, description="Train a 2-D stream model for the report's ablation.")
    ablation_bits: int | None = pydantic.Field(
        default=None, description="Bit length of the ablation (default 64 if requested, else the middle one)."
    )
    itq_baseline: bool = pydantic.Field(default=True, description="Compare with ITQ on stored open_clip features.")


@dataclass
class ResolvedOptions:
    run: DsmhnRunOptions
    model: dict[str, Any]  # DsmhnConfig fields (without n_bits, labels, vocabulary)
    train: dict[str, Any]  # DsmhnTrainOptions fields

    @property
    def frame_size(self) -> int:
        return int(self._model_option("frame_size"))

    @property
    def resize(self) -> str:
        """"crop" or "fit": how decoding makes frames square (the model's FrameSpec)."""
        return str(self._model_option("resize"))

    def _model_option(self, name: str) -> Any:
        from hashing.methods.dsmhn.config import DsmhnConfig

        return self.model.get(name, DsmhnConfig.model_fields[name].default)


def resolve_options(config: TrainRunConfig) -> ResolvedOptions:
    """Split ``config.options`` between the run, the model config and the train options; unknown keys fail."""
    from hashing.methods.dsmhn.config import DsmhnConfig, DsmhnTrainOptions

    run_keys = set(DsmhnRunOptions.model_fields)
    fixed = {"n_bits", "labels", "vocabulary", "clip_text_dim"}
    model_keys = set(DsmhnConfig.model_fields) - fixed
    train_keys = set(DsmhnTrainOptions.model_fields)
    unknown = sorted(set(config.options) - run_keys - model_keys - train_keys)
    if unknown:
        raise ValueError(f"unknown DSMHN option(s) {unknown}; known: {', '.join(sorted(run_keys | model_keys | train_keys))}")
    run = DsmhnRunOptions.model_validate({k: v for k, v in config.options.items() if k in run_keys})
    model = {k: v for k, v in config.options.items() if k in model_keys and k not in run_keys}
    frames = model.setdefault("frames_per_clip", config.sampling.frames_per_clip)
    if frames != config.sampling.frames_per_clip:
        raise ValueError(f"frames_per_clip={frames} differs from the sampling's {config.sampling.frames_per_clip}: "
                         "set --frames-per-clip instead, so indexing samples clips the same way")
    if model.get("text_input", "words") != "words" and model.get("clip_text_encoder") is None:
        # The frozen CLIP under the text stream is the run's own encoder (--clip-arch/--clip-checkpoint/...).
        model["clip_text_encoder"] = config.encoder.model_dump(mode="json")
    train = {k: v for k, v in config.options.items() if k in train_keys and k not in run_keys and k not in model_keys}
    train.setdefault("seed", config.seed)
    return ResolvedOptions(run=run, model=model, train=train)


# ------------------------------------------------------------------------------------------- data


@dataclass
class SplitData:
    """Clips of one split with their video's caption and labels, plus one row per video."""

    clip_table: pa.Table  # video_id, fingerprint, clip_idx, t_start, t_end
    clips: np.ndarray  # uint8 [N, K, S, S, 3]
    videos: list[dict]  # catalog rows, in video_id order
    clip_video: np.ndarray  # int64 [N]: index into ``videos`` of each clip

    @property
    def caption_alternatives(self) -> list[list[str]]:
        """Per clip, every caption of its video (the catalog's ``captions``, else just ``caption``)."""
        return [all_captions(self.videos[i]) for i in self.clip_video]

    def labels(self, vocabulary: list[str]) -> np.ndarray:
        return multi_hot([self.videos[i]["labels"] for i in self.clip_video], vocabulary)


def usable_rows(layout: StoreLayout, collection: str) -> list[dict]:
    """Ok catalog rows with a caption and labels; a missing catalog says how to make one."""
    catalog = read_catalog(layout, collection)
    if catalog is None:
        raise FileNotFoundError(
            f"collection '{collection}' has no catalog under {layout.root}; DSMHN learns from a cataloged "
            f"collection: run 'reelhash index SOURCE --collection {collection}' first (any encoder, e.g. "
            "--random-weights), then train"
        )
    return [r for r in ok_rows(catalog) if r.get("caption") and r.get("labels")]


def split_rows(rows: list[dict], holdout_fraction: float) -> tuple[list[dict], list[dict], str]:
    """(train, test, rule): the catalog's split when it has test rows, else a hash-chosen hold-out."""
    test = [r for r in rows if (r.get("split") or "").lower() == "test"]
    if test:
        train = [r for r in rows if (r.get("split") or "").lower() != "test"]
        rule = "catalog split (test rows held out)"
    else:
        # sha256 of the video id orders videos independently of the catalog order and of the seed.
        ranked = sorted(rows, key=lambda r: hashlib.sha256(r["video_id"].encode()).hexdigest())
        n_test = max(1, round(holdout_fraction * len(rows))) if len(rows) > 1 else 0
        held = {r["video_id"] for r in ranked[:n_test]}
        test = [r for r in rows if r["video_id"] in held]
        train = [r for r in rows if r["video_id"] not in held]
        rule = f"no test split in the catalog: {holdout_fraction:.0%} held out by hash of video_id"
    return train, test, rule


def _split_key(train: list[dict], test: list[dict]) -> str:
    return content_key([f"train:{r['video_id']}:{r['fingerprint']}" for r in sorted(train, key=lambda r: r["video_id"])]
                       + [f"test:{r['video_id']}:{r['fingerprint']}" for r in sorted(test, key=lambda r: r["video_id"])])


def _load_split(layout: StoreLayout, config: TrainRunConfig, rows: list[dict], options: ResolvedOptions) -> SplitData:
    table, clips = load_clips(layout, config.collection, {r["video_id"]: r["fingerprint"] for r in rows},
                              config.sampling, options.frame_size, options.resize)
    present = set(table["video_id"].to_pylist())
    videos = sorted((r for r in rows if r["video_id"] in present), key=lambda r: r["video_id"])
    position = {r["video_id"]: i for i, r in enumerate(videos)}
    clip_video = np.array([position[v] for v in table["video_id"].to_pylist()], dtype=np.int64)
    return SplitData(table, clips, videos, clip_video)


def _decoded_split(layout: StoreLayout, config: TrainRunConfig, options: ResolvedOptions,
                   prepared: dict) -> tuple[SplitData, SplitData]:
    """Train and test data exactly as ``prepare`` fixed them (fails if the catalog changed since)."""
    rows = usable_rows(layout, config.collection)
    failed = set(prepared.get("failed_video_ids", []))
    rows = [r for r in rows if r["video_id"] not in failed]
    train_rows, test_rows, _ = split_rows(rows, options.run.holdout_fraction)
    if _split_key(train_rows, test_rows) != prepared["split_key"]:
        raise RuntimeError(f"the catalog of '{config.collection}' changed after the training data was prepared "
                           "(a concurrent index run?); re-run the training")
    return _load_split(layout, config, train_rows, options), _load_split(layout, config, test_rows, options)


# ------------------------------------------------------------------------------------------- method


class DsmhnTrainingMethod:
    name = "dsmhn"

    def prepare(self, layout: StoreLayout, config: TrainRunConfig) -> dict[str, Any]:
        options = resolve_options(config)
        ensure_ray(config.ray)
        rows = usable_rows(layout, config.collection)
        if len(rows) < 2:
            raise ValueError(f"collection '{config.collection}' has {len(rows)} ok videos with a caption and labels; "
                             "DSMHN needs labelled, captioned videos (a manifest with 'caption' and 'labels' columns)")
        cache = ensure_clip_cache(layout, config.collection, rows, config.sampling, options.frame_size, config.extract,
                                  resize=options.resize)
        failed = sorted({f["video_id"] for f in cache["failures"]})
        rows = [r for r in rows if r["video_id"] not in set(failed)]
        train_rows, test_rows, rule = split_rows(rows, options.run.holdout_fraction)
        if not train_rows or not test_rows:
            raise ValueError(f"need videos in both splits to train and evaluate; got {len(train_rows)} train and "
                             f"{len(test_rows)} test videos ({rule})")
        return {
            "collection": config.collection,
            "frame_size": options.frame_size,
            "resize": options.resize,
            "frames_per_clip": config.sampling.frames_per_clip,
            "split_rule": rule,
            "train_videos": len(train_rows),
            "test_videos": len(test_rows),
            "split_key": _split_key(train_rows, test_rows),
            "clip_cache": {k: v for k, v in cache.items() if k != "failures"},
            "decode_failures": cache["failures"],
            "failed_video_ids": failed,
        }

    def train(self, layout: StoreLayout, config: TrainRunConfig, prepared: dict[str, Any], n_bits: int,
              on_epoch: EpochCallback | None = None) -> TrainedModel:
        from hashing.hashers.sign import SignHasher
        from hashing.methods.dsmhn.encoder import DsmhnEncoderConfig

        started = time.monotonic()
        options = resolve_options(config)
        train_data, test_data = _decoded_split(layout, config, options, prepared)
        name = config.model_name(n_bits)
        model, history, model_config = _fit(train_data, n_bits, options, name, video_stream=None, on_epoch=on_epoch)
        staging = new_model_staging(layout, name)
        streams_dir = staging / STREAMS_DIR
        model.save(streams_dir)
        encoder_config = DsmhnEncoderConfig(model_dir=str(streams_dir))
        # Evaluate what was saved, loaded back the way indexing and search load it.
        encoder = build_media_encoder(encoder_config)
        hasher = SignHasher(n_bits).fit(np.zeros((1, n_bits), np.float32))
        seconds = time.monotonic() - started
        model_id = save_model(layout, name, staging=staging, hasher=hasher, encoder_config=encoder_config,
                              encoder_info=encoder.describe(), sampling=config.sampling, training={
                       "method": "dsmhn", "collection": config.collection, "split_rule": prepared["split_rule"],
                       "train_videos": len(train_data.videos), "train_clips": len(train_data.clips),
                       "test_videos": len(test_data.videos), "model_config": model_config,
                       "train_options": options.train, "final_loss": {k: v[-1] for k, v in history.items() if v},
                       "seconds": round(seconds, 1)})
        full = evaluate_split(test_data, encoder.encode_clips, encoder.encode_text, hasher.encode)
        save_model_metrics(layout, model_id, {"collection": config.collection, "eval_set": "held-out test split",
                                              "split_rule": prepared["split_rule"], "history": history, **full})
        return TrainedModel(model_id=model_id, n_bits=n_bits, metrics=headline(full), history=history,
                            seconds=time.monotonic() - started)

    def extra_report(self, layout: StoreLayout, config: TrainRunConfig, prepared: dict[str, Any],
                     models: list[TrainedModel]) -> tuple[dict[str, Any], list[str]]:
        options = resolve_options(config)
        lines = ["## DSMHN across bit lengths (held-out test split)", "",
                 f"Split: {prepared['split_rule']}; {prepared['train_videos']} train / {prepared['test_videos']} test "
                 "videos. mAP@all over Hamming ranking; *any* = shares a label, *exact* = same label set.", "",
                 "| bits | t→v mAP any | t→v mAP exact | v→t mAP any | v→t mAP exact | t→v R@1 | v→t R@1 |",
                 "|---|---|---|---|---|---|---|"]
        lines += [table_row(str(m.n_bits), m.metrics, BITS_TABLE_KEYS) for m in sorted(models, key=lambda m: m.n_bits)]
        lines += [chance_row(models[0].metrics, BITS_TABLE_KEYS), ""]
        bits = ablation_bits(config.bits, options.run.ablation_bits)
        reference = next((m for m in models if m.n_bits == bits), None)
        extra: dict[str, Any] = {"ablation_bits": bits}
        notes: list[str] = []
        rows = [("DSMHN, 3-D video stream", reference.metrics)] if reference else []
        if options.run.ablation and reference is not None:
            train_data, test_data = _decoded_split(layout, config, options, prepared)
            started = time.monotonic()
            model, history, _ = _fit(train_data, bits, options, f"ablation-2d-{bits}b", video_stream="2d")
            sign = make_hasher("sign", bits).fit(np.zeros((1, bits), np.float32))
            metrics = headline(evaluate_split(test_data, model.encode_video, model.encode_text, sign.encode))
            metrics["seconds"] = round(time.monotonic() - started, 1)
            metrics["final_loss"] = history.get("total", [None])[-1]
            extra["ablation_2d"] = metrics
            rows.append(("DSMHN, 2-D per-frame stream + mean pooling", metrics))
            gains = {d: reference.metrics.get(f"{d}.motion_mAP", np.nan) - metrics.get(f"{d}.motion_mAP", np.nan)
                     for d in ("text_to_video", "video_to_text")}
            extra["motion_gain_3d_over_2d"] = {d: (None if np.isnan(g) else float(g)) for d, g in gains.items()}
            notes.append("- 3-D minus 2-D motion mAP: " + ", ".join(
                f"{d.replace('_to_', '→').replace('text', 't').replace('video', 'v')} {g:+.3f}" for d, g in gains.items()))
        if options.run.itq_baseline:
            for label, metrics, note in itq_baselines(layout, config, prepared, options, bits):
                extra.setdefault("itq_baselines", {})[label] = {"metrics": metrics, "note": note}
                if metrics is not None:
                    rows.append((label, metrics))
                notes.append(f"- {label}: {note}")
        if rows:
            lines += [f"## Ablation and baselines at {bits} bits (held-out test split)", "",
                      "Motion mAP: relevance = shares a motion label, over videos that have one (the 3-D stream sees "
                      "temporal order; a mean of per-frame features cannot tell e.g. left from right).", "",
                      "| model | t→v motion mAP | v→t motion mAP | t→v mAP any | t→v mAP exact | v→t mAP any | "
                      "v→t mAP exact |", "|---|---|---|---|---|---|---|"]
            lines += [table_row(label, m, ABLATION_TABLE_KEYS) for label, m in rows]
            lines += [chance_row(models[0].metrics, ABLATION_TABLE_KEYS), ""]
        if notes:
            lines += ["Notes:", *notes, ""]
        return extra, lines


def table_row(leading: str | Sequence[str], metrics: dict[str, Any], keys: Sequence[str]) -> str:
    """A markdown row: the ``leading`` cell(s) (a label, or label, bits, ...), then ``metrics[key]`` per key."""
    cells = [leading] if isinstance(leading, str) else list(leading)
    return "| " + " | ".join([*cells, *(_cell(metrics.get(key), key) for key in keys)]) + " |"


def chance_row(metrics: dict[str, Any], keys: Sequence[str], leading: str | Sequence[str] = "chance") -> str:
    """The chance level of each column: ``chance.<metric>`` of ``headline`` metrics, the same for both directions."""
    return table_row(leading, {key: metrics.get(f"chance.{key.split('.')[1]}") for key in keys}, keys)


def _cell(value: Any, key: str) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.1f}" if "R@" in key else f"{value:.3f}"  # R@K are percentages


def ablation_bits(bits: list[int], chosen: int | None) -> int:
    if chosen is not None:
        return chosen
    return ABLATION_PREFERRED_BITS if ABLATION_PREFERRED_BITS in bits else sorted(bits)[len(bits) // 2]


def _fit(data: SplitData, n_bits: int, options: ResolvedOptions, name: str, video_stream: str | None,
         on_epoch: EpochCallback | None = None):
    from hashing.methods.dsmhn.config import DsmhnConfig, DsmhnTrainOptions
    from hashing.methods.dsmhn.train import train_dsmhn
    from hashing.methods.dsmhn.vocab import build_vocabulary

    label_vocabulary = sorted({label for row in data.videos for label in row["labels"]})
    overrides = dict(options.model)
    if video_stream is not None:
        overrides["video_stream"] = video_stream
    model_config = DsmhnConfig(n_bits=n_bits, labels=label_vocabulary,
                               vocabulary=build_vocabulary([c for r in data.videos for c in all_captions(r)]),
                               **overrides)
    train_options = DsmhnTrainOptions(**options.train)
    logger.info("training %s on %d clips of %d videos", name, len(data.clips), len(data.videos))
    model, history = train_dsmhn(data.clips, data.caption_alternatives, data.labels(label_vocabulary), model_config,
                                 train_options, progress=False, on_epoch=on_epoch)
    return model, history, {k: v for k, v in model_config.model_dump().items() if k not in ("vocabulary", "labels")}


# ------------------------------------------------------------------------------------------- evaluation


def evaluate_split(data: SplitData, encode_clips: Callable[[np.ndarray], np.ndarray],
                   encode_text: Callable[[list[str]], np.ndarray],
                   encode_codes: Callable[..., np.ndarray], batch_size: int = 64) -> dict[str, Any]:
    """Held-out retrieval metrics of a model, computed the way the index flow sees the model.

    Video codes come from the mean of the video's clip outputs (``features.video_level_embeddings``, as
    ``index`` stores them), caption codes from the text stream; both directions with label relevance
    ``any`` and ``exact``, R@K against the paired video/caption, motion-label mAP and chance levels.
    """
    outputs = np.concatenate([encode_clips(data.clips[i:i + batch_size]) for i in range(0, len(data.clips), batch_size)])
    clip_table = data.clip_table.select(["video_id", "clip_idx"]).append_column("embedding", embedding_array(outputs))
    video_ids, video_float = video_level_embeddings(clip_table)
    if video_ids != [r["video_id"] for r in data.videos]:  # both are sorted by video_id
        raise RuntimeError("clip outputs and videos are out of order; this is a bug")
    text_float = encode_text([r["caption"] for r in data.videos])
    return retrieval_metrics(video_float, text_float, encode_codes(video_float, modality="video"),
                             encode_codes(text_float, modality="text"),
                             [r["labels"] for r in data.videos])


def retrieval_metrics(video_float: np.ndarray, text_float: np.ndarray, video_codes: np.ndarray,
                      text_codes: np.ndarray, label_lists: list[list[str]]) -> dict[str, Any]:
    vocabulary = sorted({label for labels in label_lists for label in labels})
    labels = multi_hot(label_lists, vocabulary)
    motion_columns = [i for i, label in enumerate(vocabulary) if label.startswith(MOTION_PREFIX)]
    targets = np.arange(len(label_lists))
    metrics: dict[str, Any] = {"n_videos": len(label_lists), "code_bits": int(video_codes.shape[1] * 8)}
    any_rel, exact_rel = label_relevance(labels, labels, "any"), label_relevance(labels, labels, "exact")
    motion_rel = label_relevance(labels[:, motion_columns], labels[:, motion_columns], "any") if motion_columns else None
    for direction, q_codes, g_codes, q_float, g_float in (
        ("text_to_video", text_codes, video_codes, text_float, video_float),
        ("video_to_text", video_codes, text_codes, video_float, text_float),
    ):
        result = evaluate_retrieval(q_codes, g_codes, q_float, g_float, targets=targets,
                                    query_labels=labels, gallery_labels=labels, label_rule="any")
        order = rank_matrix_hamming(q_codes, g_codes)
        result["hash"]["mAP@all_exact"] = mean_average_precision(order, exact_rel)
        if motion_rel is not None and motion_rel.any():
            result["hash"]["mAP@all_motion"] = mean_average_precision(order, motion_rel)
        metrics[direction] = result
    metrics["chance"] = {
        "R@1": 100.0 / len(label_lists),
        "mAP@all_any": float(any_rel.mean()),
        "mAP@all_exact": float(exact_rel.mean()),
        **({"mAP@all_motion": float(motion_rel[motion_rel.any(axis=1)].mean())}
           if motion_rel is not None and motion_rel.any() else {}),
    }
    return metrics


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The compact, flat numbers of a full evaluation (what the CLI, the table artifact and the report show)."""
    out: dict[str, Any] = {"n_test_videos": metrics["n_videos"]}
    for direction in ("text_to_video", "video_to_text"):
        hashed = metrics[direction]["hash"]
        out[f"{direction}.mAP_any"] = hashed["mAP@all"]
        out[f"{direction}.mAP_exact"] = hashed["mAP@all_exact"]
        if "mAP@all_motion" in hashed:
            out[f"{direction}.motion_mAP"] = hashed["mAP@all_motion"]
        out.update({f"{direction}.R@{k}": hashed[f"R@{k}"] for k in (1, 5, 10)})
        out[f"{direction}.MdR"] = hashed["MdR"]
    chance = metrics["chance"]
    out.update({"chance.R@1": chance["R@1"], "chance.mAP_any": chance["mAP@all_any"],
                "chance.mAP_exact": chance["mAP@all_exact"]})
    if "mAP@all_motion" in chance:
        out["chance.motion_mAP"] = chance["mAP@all_motion"]
    return out


# ------------------------------------------------------------------------------------------- baseline


def itq_baselines(layout: StoreLayout, config: TrainRunConfig, prepared: dict, options: ResolvedOptions,
                  n_bits: int) -> list[tuple[str, dict | None, str]]:
    """ITQ on the collection's stored open_clip features: ``(label, headline metrics or None, note)`` per set.

    Fitted like the index flow fits it (on clip and caption embeddings together), but on the train split
    only, and evaluated on the test split exactly like DSMHN.
    """
    results = []
    failed = set(prepared.get("failed_video_ids", []))
    rows = [r for r in usable_rows(layout, config.collection) if r["video_id"] not in failed]
    train_rows, test_rows, _ = split_rows(rows, options.run.holdout_fraction)
    for encoder_id, description, sampling in _open_clip_feature_sets(layout, config.collection):
        label = f"ITQ on {description} features"
        found = load_collection_features(layout, config.collection, encoder_id, sampling)
        if found.clips is None:
            continue
        ids, video_float = video_level_embeddings(found.clips)
        by_id = dict(zip(ids, video_float))
        train = [r for r in train_rows if r["video_id"] in by_id and r["caption"] in found.texts]
        test = [r for r in test_rows if r["video_id"] in by_id and r["caption"] in found.texts]
        if len(test) < 2 or not train:
            results.append((label, None, "too few indexed videos in one of the splits"))
            continue
        train_ids = pa.array(sorted(r["video_id"] for r in train), pa.string())
        train_clips = found.clips.filter(pc.is_in(found.clips["video_id"], value_set=train_ids))
        fit_on = np.concatenate([embeddings_from_column(train_clips["embedding"]),
                                 np.stack([found.texts[r["caption"]] for r in train])])
        try:
            hasher = make_hasher("itq", n_bits, config.seed).fit(fit_on)
        except ValueError as error:  # e.g. fewer training rows or a narrower embedding than n_bits
            results.append((label, None, str(error)))
            continue
        test_video = np.stack([by_id[r["video_id"]] for r in test])
        test_text = np.stack([found.texts[r["caption"]] for r in test])
        full = retrieval_metrics(test_video, test_text, hasher.encode(test_video, modality="video"),
                                 hasher.encode(test_text, modality="text"),
                                 [r["labels"] for r in test])
        results.append((label, headline(full), f"fitted on {len(fit_on)} train clip + caption embeddings"))
    return results


def _open_clip_feature_sets(layout: StoreLayout, collection: str):
    """(encoder_id, description, sampling) of every open_clip clip-feature set of the collection."""
    from pipeline.sampling import SamplingConfig

    seen = set()
    for collection_dir in sorted(layout.area("features").glob(f"*/{collection}")):
        for set_dir in sorted(p for p in collection_dir.iterdir() if p.is_dir() and p.name != "text"):
            for _, manifest in committed_runs(set_dir):
                encoder = manifest.get("encoder") or {}
                if encoder.get("kind", "open_clip") != "open_clip" or "sampling" not in manifest:
                    continue
                key = (collection_dir.parent.name, set_dir.name)
                if key in seen:
                    break
                seen.add(key)
                random = not (encoder.get("pretrained") or encoder.get("checkpoint_path"))
                description = f"{'random-weight ' if random else ''}CLIP {encoder.get('arch', '?')}"
                yield collection_dir.parent.name, description, SamplingConfig.model_validate(manifest["sampling"])
                break


METHOD = DsmhnTrainingMethod()
