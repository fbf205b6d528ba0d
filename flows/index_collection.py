"""The `index_collection` Prefect flow: plan → extract → fit → hash → evaluate → publish.

Tasks are coarse and return small things (paths, counts, metrics); the per-video work runs inside Ray.
Each task is idempotent because the store is: committed runs are found and reused, so a retry or a
re-run of an unchanged collection decodes nothing and publishes nothing new.
Run as a file: ``python -m flows.index_collection SOURCE COLLECTION``.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows.config import IndexRunConfig
from hashing.encoders import build_media_encoder
from pipeline.catalog import catalog_summary, read_catalog
from pipeline.codes import read_code_run, write_code_run
from pipeline.evaluate import evaluate_codes, headline, write_report
from pipeline.extract import extract_clip_features
from pipeline.features import (
    cached_failures,
    cached_fingerprints,
    clip_feature_dir,
    embeddings_from_column,
    ensure_text_features,
    load_clip_features,
    load_text_features,
    text_feature_dir,
)
from pipeline.models import fit_hasher, load_model, model_exists, save_model, save_model_metrics
from pipeline.plan import mark_failed, ok_rows, refresh_catalog
from pipeline.publish import CollectionCodes, publish_index, with_catalog_columns
from pipeline.ray_runtime import ensure_ray
from pipeline.sampling import SamplingConfig
from pipeline.shards import committed_runs, content_key
from pipeline.store import StoreLayout


class RunFailedError(RuntimeError):
    """Too many files of a collection failed; the message lists which and why."""


def _layout(config: IndexRunConfig) -> StoreLayout:
    return StoreLayout.from_option(config.store)


def _run_spec(config: IndexRunConfig) -> tuple[BaseModel, SamplingConfig]:
    """Encoder and clip sampling of this run: the given model's own when --model is set."""
    if config.model:
        model = load_model(_layout(config), config.model)
        return model.encoder_config, model.sampling
    return config.encoder, config.sampling


def check_failure_bound(summary: dict, max_failure_rate: float, stage: str) -> None:
    if summary["total"] and summary["failed"] / summary["total"] > max_failure_rate:
        listing = "\n".join(f"  {uri}: {error}" for uri, error in summary["failures"][:50])
        raise RunFailedError(
            f"{stage}: {summary['failed']} of {summary['total']} files failed "
            f"({summary['failed'] / summary['total']:.0%} > the bound {max_failure_rate:.0%}); "
            f"fix or remove these files, or raise --max-failure-rate:\n{listing}"
        )


@task(name="plan: catalog the collection", cache_policy=NO_CACHE)
def plan(config: IndexRunConfig) -> dict:
    ensure_ray(config.ray)
    result = refresh_catalog(_layout(config), config.source, config.collection)
    summary = result.summary
    get_run_logger().info(
        "catalog of %s (%s): %d files, %d ok, %d failed", config.collection, result.source_kind,
        summary["total"], summary["ok"], summary["failed"],
    )
    if summary["total"] == 0:
        raise RunFailedError(f"no media files found in {config.source}")
    check_failure_bound(summary, config.max_failure_rate, "catalog")
    return {"catalog": str(result.path), **{k: summary[k] for k in ("total", "ok", "failed")}}


@task(name="extract: decode, sample and encode clips", cache_policy=NO_CACHE)
def extract(config: IndexRunConfig) -> dict:
    ensure_ray(config.ray)
    layout = _layout(config)
    encoder_config, sampling = _run_spec(config)
    encoder = build_media_encoder(encoder_config)
    catalog = read_catalog(layout, config.collection)
    feature_dir = clip_feature_dir(layout, encoder.encoder_id, config.collection, sampling)
    cached = cached_fingerprints(feature_dir)
    known_failures = cached_failures(feature_dir)
    rows = ok_rows(catalog)
    todo = [r for r in rows if cached.get(r["video_id"]) != r["fingerprint"]]
    # A file that already failed to decode in its current state is not decoded again; it stays failed.
    repeat_failures = [known_failures[r["video_id"]] for r in todo
                       if known_failures.get(r["video_id"], {}).get("fingerprint") == r["fingerprint"]]
    todo = [r for r in todo if r["video_id"] not in {f["video_id"] for f in repeat_failures}]
    get_run_logger().info("%d videos to decode, %d already have features, %d known to fail",
                          len(todo), len(rows) - len(todo) - len(repeat_failures), len(repeat_failures))
    result = extract_clip_features(
        todo, feature_dir=feature_dir, encoder_config=encoder_config, frame_size=encoder.frame_spec.size,
        embed_dim=encoder.embed_dim, sampling=sampling, extract=config.extract,
    )
    catalog = mark_failed(layout, config.collection, catalog, result.failures + repeat_failures)
    captions = [r["caption"] for r in ok_rows(catalog) if r["caption"]]
    ensure_text_features(text_feature_dir(layout, encoder.encoder_id, config.collection), captions, encoder.encode_text)
    return {
        "decoded": result.videos_requested,
        "encoded": result.videos_encoded,
        "cached": len(rows) - len(todo) - len(repeat_failures),
        "clips": result.clips,
        "decode_failures": result.failures,
        "seconds": round(result.seconds, 2),
        "encoder_id": encoder.encoder_id,
        "encoder": encoder.describe(),
    }


def _current_features(config: IndexRunConfig, encoder_id: str):
    layout = _layout(config)
    _, sampling = _run_spec(config)
    catalog = read_catalog(layout, config.collection)
    videos = {r["video_id"]: r["fingerprint"] for r in ok_rows(catalog)}
    clips = load_clip_features(clip_feature_dir(layout, encoder_id, config.collection, sampling), videos)
    if clips is None:
        raise RunFailedError(f"no video of {config.collection} could be decoded; see the catalog's errors")
    videos = {vid: videos[vid] for vid in set(clips["video_id"].to_pylist())}
    texts = load_text_features(text_feature_dir(layout, encoder_id, config.collection),
                               [r["caption"] for r in ok_rows(catalog) if r["caption"]])
    return catalog, clips, videos, texts


@task(name="fit: fit or load the hash model", cache_policy=NO_CACHE)
def fit(config: IndexRunConfig, encoder_id: str, encoder_info: dict) -> str:
    layout = _layout(config)
    if config.model:
        model = load_model(layout, config.model)
        if model.encoder_id != encoder_id:
            raise RunFailedError(f"model {config.model} was fitted on encoder {model.encoder_id}, not {encoder_id}")
        return config.model
    _, clips, videos, texts = _current_features(config, encoder_id)
    key = content_key([config.method, str(config.bits), str(config.seed), encoder_id]
                      + sorted(f"{v}:{f}" for v, f in videos.items()))
    model_id = f"{config.method}{config.bits}-{config.collection}-{key[:8]}"
    if not model_exists(layout, model_id):
        text_matrix = np.stack(list(texts.values())) if texts else np.zeros((0, encoder_info["embed_dim"]), np.float32)
        hasher = fit_hasher(config.method, config.bits, config.seed, embeddings_from_column(clips["embedding"]), text_matrix)
        encoder_config, sampling = _run_spec(config)
        save_model(layout, model_id, hasher=hasher, encoder_config=encoder_config, encoder_info=encoder_info,
                   sampling=sampling,
                   training={"collection": config.collection, "videos": len(videos), "clips": clips.num_rows,
                             "captions": len(texts)})
    return model_id


@task(name="hash: write code shards", cache_policy=NO_CACHE)
def hash_codes(config: IndexRunConfig, encoder_id: str, model_id: str) -> dict:
    layout = _layout(config)
    _, clips, videos, _ = _current_features(config, encoder_id)
    model = load_model(layout, model_id)
    run = write_code_run(layout, model_id=model_id, collection=config.collection, hasher=model.hasher,
                         clip_features=clips, videos=videos)
    return {"codes_run": str(run.run_dir), "written": run.written, "clips": run.manifest["rows"],
            "videos": len(videos)}


@task(name="evaluate: retrieval metrics and report", cache_policy=NO_CACHE)
def evaluate(config: IndexRunConfig, encoder_id: str, model_id: str, run_id: str, context: dict) -> dict:
    layout = _layout(config)
    catalog, clips, _, texts = _current_features(config, encoder_id)
    model = load_model(layout, model_id)
    metrics = evaluate_codes(catalog, clips, texts, model.hasher)
    report_dir = write_report(layout, run_id, metrics, context)
    save_model_metrics(layout, model_id, {"collection": config.collection, **headline(metrics)})
    return {"report_dir": str(report_dir), "headline": headline(metrics)}


@task(name="publish: index version and CURRENT", cache_policy=NO_CACHE)
def publish(config: IndexRunConfig, model_id: str, codes: dict, metrics: dict) -> dict:
    layout = _layout(config)
    model = load_model(layout, model_id)
    run_dir = Path(codes["codes_run"])
    manifest = next(m for p, m in committed_runs(run_dir.parent) if p == run_dir)
    table = read_code_run(run_dir, manifest)
    joined = with_catalog_columns(table, read_catalog(layout, config.collection))
    result = publish_index(
        layout, config.index_name, model_id=model_id, code_bits=model.hasher.n_bits,
        collections=[CollectionCodes(config.collection, str(run_dir.relative_to(layout.root)), joined)],
        metrics=metrics, model_info={"model_id": model_id, **model.config.get("encoder", {}),
                                     "method": model.hasher.method, "sampling": model.sampling.model_dump()},
    )
    return {"version": result.version, "version_dir": str(result.version_dir), "published": result.published}


@flow(name="index_collection", log_prints=True)
def index_collection(config: IndexRunConfig) -> dict:
    """Index one collection end to end and publish it as a new version of an index."""
    logger = get_run_logger()
    run_id = f"{config.collection}-{uuid.uuid4().hex[:8]}"
    planned = plan(config)
    extracted = extract(config)
    failed = planned["failed"] + len(extracted["decode_failures"])
    catalog = read_catalog(_layout(config), config.collection)
    summary = catalog_summary(catalog)
    create_table_artifact(
        key=f"{_artifact_key(config.collection)}-failures",
        table=[{"uri": uri, "error": error} for uri, error in summary["failures"]] or [{"uri": "-", "error": "none"}],
        description=f"Files of {config.collection} that could not be indexed",
    )
    check_failure_bound(summary, config.max_failure_rate, "extract")
    model_id = fit(config, extracted["encoder_id"], extracted["encoder"])
    codes = hash_codes(config, extracted["encoder_id"], model_id)
    context = {"collection": config.collection, "index": config.index_name, "model_id": model_id,
               "encoder": extracted["encoder"]["arch"] if "arch" in extracted["encoder"] else extracted["encoder_id"],
               "random_weights": extracted["encoder"].get("random_weights", False), "files": summary["total"],
               "failed": summary["failed"], "decoded": extracted["decoded"], "clips": codes["clips"]}
    evaluated = evaluate(config, extracted["encoder_id"], model_id, run_id, context)
    published = publish(config, model_id, codes, evaluated["headline"]) if config.publish else None
    counts = {
        "files": summary["total"], "ok": summary["ok"], "failed": failed, "decoded": extracted["decoded"],
        "from_cache": extracted["cached"], "clips": codes["clips"], "videos_indexed": codes["videos"],
        "index_version": published["version"] if published else None,
    }
    create_table_artifact(key=f"{_artifact_key(config.collection)}-counts", table=[counts],
                          description=f"Counts of run {run_id}")
    create_markdown_artifact(
        key=f"{_artifact_key(config.collection)}-report",
        markdown=(_layout(config).reports_dir(run_id) / "report.md").read_text(),
        description=f"Report of run {run_id}",
    )
    logger.info("run %s: %s", run_id, counts)
    return {"run_id": run_id, "model_id": model_id, "counts": counts, "metrics": evaluated["headline"],
            "report_dir": evaluated["report_dir"], "published": published, "codes_run": codes["codes_run"],
            "failures": [{"uri": u, "error": e} for u, e in summary["failures"]]}


def _artifact_key(name: str) -> str:
    # Prefect artifact keys allow only lowercase letters, digits and dashes.
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "collection"


if __name__ == "__main__":
    print(index_collection(IndexRunConfig(source=sys.argv[1], collection=sys.argv[2],
                                          encoder={"allow_random_weights": True})))
