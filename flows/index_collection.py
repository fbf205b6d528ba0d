"""The `index_collection` Prefect flow: plan → extract → fit → hash → evaluate → publish.

Tasks are coarse and return small things (paths, counts, metrics); the per-video work runs inside Ray.
Each task is idempotent because the store is: committed runs are found and reused, so a retry or a
re-run of an unchanged collection decodes nothing and publishes nothing new. The same tasks serve the
`nightly_reindex` flow (`flows/nightly_reindex.py`), which runs them over every collection of an index.
Run as a file: ``python -m flows.index_collection SOURCE COLLECTION``.
"""

from __future__ import annotations

import gc
import sys
import time
import uuid

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows.config import IndexRunConfig, RunSettings
from hashing.encoders import build_media_encoder, media_encoder_facts
from pipeline.catalog import catalog_summary, read_catalog
from pipeline.codes import read_code_run, write_code_run
from pipeline.errors import RunFailedError
from pipeline.evaluate import evaluate_codes, headline, report_markdown_for_ui, write_report
from pipeline.encoder_pool import EncoderPool
from pipeline.extract import extract_clip_features, start_encoder_pool
from pipeline.features import (
    cached_failures,
    cached_fingerprints,
    clip_feature_dir,
    embeddings_from_column,
    ensure_text_features,
    load_collection_features,
    text_feature_dir,
)
from pipeline.locks import collection_lock, index_run_lock
from hashing.hashers.storage import ModelLoadError
from pipeline.models import (
    fit_hasher,
    fittable_method,
    load_model,
    model_summary,
    resolve_model_id,
    save_model,
    save_model_metrics,
)
from pipeline.quality_gate import check_quality_gate
from pipeline.plan import mark_failed, ok_rows, refresh_catalog
from pipeline.publish import (
    CollectionCodes,
    IndexNotFoundError,
    publish_index,
    read_current_manifest,
    rows_of_collection,
    with_catalog_columns,
)
from pipeline.ray_runtime import ensure_ray
from pipeline.registry import ensure_registered
from pipeline.sampling import SamplingConfig
from pipeline.shards import committed_runs, content_key
from pipeline.failpoints import crash_point
from pipeline.store import StoreLayout
from pipeline.thumbnails import codes_run_thumbnails, version_thumbnails


PROGRESS_INTERVAL_S = 3.0
PROGRESS_LOG_INTERVAL_S = 10.0


def _layout(config: RunSettings) -> StoreLayout:
    return StoreLayout.from_option(config.store)


def run_spec(config: IndexRunConfig) -> tuple[BaseModel, SamplingConfig]:
    """Encoder and clip sampling of this run: the model's own once a model is chosen."""
    if config.model:
        model = load_model(_layout(config), config.model)
        return model.encoder_config, model.sampling
    return config.encoder, config.sampling


def current_index_model(layout: StoreLayout, index: str) -> str | None:
    try:
        return read_current_manifest(layout, index)[2]["model_id"]
    except IndexNotFoundError:
        return None


def resolve_model(settings: RunSettings, index: str) -> str | None:
    """The model a run hashes with: --model, else the index's current model (unless --refit), else None (fit)."""
    layout = _layout(settings)
    if settings.model:
        model_id = resolve_model_id(layout, settings.model)  # an alias names its newest version, fixed from here on
        load_model(layout, model_id)  # a clear error now rather than after decoding
        return model_id
    if settings.refit:
        return None
    return current_index_model(layout, index)


def publish_failures(collection: str, summary: dict) -> None:
    """The files that could not be indexed as a table artifact; a plain sentence when there are none (an empty
    table has no columns, and a placeholder row reads like a failure)."""
    key, description = f"{artifact_key(collection)}-failures", f"Files of {collection} that could not be indexed"
    if summary["failures"]:
        create_table_artifact(key=key, table=[{"uri": uri, "error": error} for uri, error in summary["failures"]],
                              description=description)
    else:
        create_markdown_artifact(key=key, markdown=f"No file of **{collection}** failed: all {summary['total']} "
                                                   "files were indexed.", description=description)


def check_failure_bound(summary: dict, max_failure_rate: float, stage: str) -> None:
    if summary["total"] and summary["failed"] / summary["total"] > max_failure_rate:
        listing = "\n".join(f"  {uri}: {error}" for uri, error in summary["failures"][:50])
        raise RunFailedError(
            f"{stage}: {summary['failed']} of {summary['total']} files failed "
            f"({summary['failed'] / summary['total']:.0%} > the bound {max_failure_rate:.0%}); "
            f"fix or remove these files, or raise --max-failure-rate:\n{listing}"
        )


@task(name="plan: catalog the collection", task_run_name="plan {config.collection}", cache_policy=NO_CACHE)
def plan(config: IndexRunConfig) -> dict:
    ensure_ray(config.ray)
    result = refresh_catalog(_layout(config), config.source, config.collection)
    summary = result.summary
    get_run_logger().info(
        "catalog of %s (%s): %d files, %d ok, %d failed; changes %s", config.collection, result.source_kind,
        summary["total"], summary["ok"], summary["failed"], result.changes,
    )
    if summary["total"] == 0:
        raise RunFailedError(f"no media files found in {config.source}")
    check_failure_bound(summary, config.max_failure_rate, "catalog")
    return {"catalog": str(result.path), "changes": result.changes,
            **{k: summary[k] for k in ("total", "ok", "failed", "deleted")}}


def encode_new_captions(layout: StoreLayout, collection: str, encoder_config: BaseModel, encoder_id: str,
                        captions: list[str], encoders: EncoderPool | None = None) -> int:
    """Encode and cache the captions not cached yet; returns how many were encoded.

    The run's encoder actors encode them when they are still up (their model is loaded); otherwise the text
    encoder is built here, and only when a caption is missing (a nightly run over a known collection builds
    nothing). The driver never holds a model beside the encoder actors, which would cost seconds of start-up and
    about 1.5 GB for ViT-B-32 (docs/architecture.md, "Start-up").
    """
    built: list = []
    encoded = [0]

    def encode_text(batch: list[str]) -> np.ndarray:
        encoded[0] += len(batch)
        if encoders is not None and encoders.actors:
            built_id, embeddings = encoders.encode_texts(batch)
        else:
            if not built:
                built.append(build_media_encoder(encoder_config))
            built_id, embeddings = built[0].encoder_id, built[0].encode_text(batch)
        if built_id != encoder_id:
            raise RuntimeError(f"the text encoder built as {built_id!r}, but the clips were encoded as "
                               f"{encoder_id!r}: hashing/encoders/identity.py and the encoder disagree")
        return embeddings

    ensure_text_features(text_feature_dir(layout, encoder_id, collection), captions, encode_text)
    built.clear()
    gc.collect()  # the weights are freed now, not whenever the cycle collector next runs
    return encoded[0]


@task(name="extract: decode, sample and encode clips", task_run_name="extract {config.collection}",
      cache_policy=NO_CACHE)
def extract(config: IndexRunConfig, encoders: EncoderPool | None = None) -> dict:
    """``encoders``: the run's encoder actors, started before the catalog was read (``start_run_encoders``); they are
    shut down here once the clips are encoded, or at once when nothing needs decoding."""
    ensure_ray(config.ray)
    layout = _layout(config)
    encoder_config, sampling = run_spec(config)
    catalog = read_catalog(layout, config.collection)
    rows = ok_rows(catalog)
    encoder = media_encoder_facts(encoder_config)
    feature_dir = clip_feature_dir(layout, encoder.encoder_id, config.collection, sampling)
    cached = cached_fingerprints(feature_dir)
    known_failures = cached_failures(feature_dir)
    todo = [r for r in rows if cached.get(r["video_id"]) != r["fingerprint"]]
    # A file that already failed to decode in its current state is not decoded again; it stays failed.
    repeat_failures = [known_failures[r["video_id"]] for r in todo
                       if known_failures.get(r["video_id"], {}).get("fingerprint") == r["fingerprint"]]
    todo = [r for r in todo if r["video_id"] not in {f["video_id"] for f in repeat_failures}]
    get_run_logger().info("%d videos to decode, %d already have features, %d known to fail",
                          len(todo), len(rows) - len(todo) - len(repeat_failures), len(repeat_failures))
    if encoders is not None and not todo:
        encoders.shutdown(graceful=False)  # their models may still be loading: no need to wait for them
    progress_id = create_progress_artifact(
        0.0 if todo else 100.0, key=f"{artifact_key(config.collection)}-extract-progress",
        description=f"Videos of {config.collection} decoded and encoded in this run ({len(todo)} to do)",
    )

    started, last_update, last_log = time.monotonic(), [0.0], [time.monotonic()]
    logger = get_run_logger()

    def report_progress(done: int, total: int) -> None:
        # At most one API call every few seconds, however many batches stream in; a log line (which the task's
        # log in the UI shows) every PROGRESS_LOG_INTERVAL_S.
        now = time.monotonic()
        if now - last_update[0] >= PROGRESS_INTERVAL_S:
            last_update[0] = now
            update_progress_artifact(progress_id, 100.0 * done / max(total, 1))
        if now - last_log[0] >= PROGRESS_LOG_INTERVAL_S:
            last_log[0] = now
            logger.info("%s: %d of %d videos decoded and encoded (%.0f%%, %.2f videos/s)", config.collection, done,
                        total, 100.0 * done / max(total, 1), done / max(now - started, 1e-9))

    result = extract_clip_features(
        todo, feature_dir=feature_dir, encoder_config=encoder_config, frame_size=encoder.frame_spec.size,
        resize=encoder.frame_spec.resize, embed_dim=encoder.embed_dim, sampling=sampling, extract=config.extract,
        on_progress=report_progress, encoders=encoders,
    )
    update_progress_artifact(progress_id, 100.0)
    captions_encoded = encode_new_captions(layout, config.collection, encoder_config, encoder.encoder_id,
                                           [r["caption"] for r in rows if r["caption"]], encoders)
    if encoders is not None:
        encoders.shutdown()
    first_batch = "" if result.first_batch_seconds is None else \
        f" (the first batch after {result.first_batch_seconds:.1f} s: the encoders' start-up)"
    logger.info("%s: decoded and encoded %d videos (%d clips, %d failed) in %.1f s%s; %d new captions encoded",
                config.collection, result.videos_encoded, result.clips, len(result.failures), result.seconds,
                first_batch, captions_encoded)
    mark_failed(layout, config.collection, catalog, result.failures + repeat_failures)
    return {
        "decoded": result.videos_requested,
        "decoded_video_ids": sorted(r["video_id"] for r in todo),
        "encoded": result.videos_encoded,
        "cached": len(rows) - len(todo) - len(repeat_failures),
        "clips": result.clips,
        "decode_failures": result.failures,
        "seconds": round(result.seconds, 2),
        "encoder_id": encoder.encoder_id,
        "encoder": encoder.description,
    }


def _current_features(config: IndexRunConfig, encoder_id: str):
    _, sampling = run_spec(config)
    found = load_collection_features(_layout(config), config.collection, encoder_id, sampling)
    if found.clips is None:
        raise RunFailedError(f"no video of {config.collection} could be decoded; see the catalog's errors")
    return found.catalog, found.clips, found.videos, found.texts


@task(name="fit: fit the hash model", task_run_name="fit {config.method} {config.bits} bits", cache_policy=NO_CACHE)
def fit(config: IndexRunConfig, encoder_id: str, encoder_info: dict) -> dict:
    layout = _layout(config)
    _, clips, videos, texts = _current_features(config, encoder_id)
    method, warning = fittable_method(config.method, config.bits, clips.num_rows + len(texts), encoder_info["embed_dim"])
    if warning:
        get_run_logger().warning(warning)
    key = content_key([method, str(config.bits), str(config.seed), encoder_id]
                      + sorted(f"{v}:{f}" for v, f in videos.items()))
    name = f"{method}{config.bits}-{config.collection}-{key[:8]}"  # the fit's inputs: same inputs, same model
    try:
        model_id = resolve_model_id(layout, name)
    except ModelLoadError:
        text_matrix = np.stack(list(texts.values())) if texts else np.zeros((0, encoder_info["embed_dim"]), np.float32)
        hasher = fit_hasher(method, config.bits, config.seed, embeddings_from_column(clips["embedding"]), text_matrix)
        encoder_config, sampling = run_spec(config)
        model_id = save_model(layout, name, hasher=hasher, encoder_config=encoder_config, encoder_info=encoder_info,
                   sampling=sampling,
                   training={"collection": config.collection, "videos": len(videos), "clips": clips.num_rows,
                             "captions": len(texts), "fallback": warning})
    return {"model_id": model_id, "warnings": [warning] if warning else []}


@task(name="hash: write code shards", task_run_name="hash {config.collection}", cache_policy=NO_CACHE)
def hash_codes(config: IndexRunConfig, encoder_id: str, model_id: str) -> dict:
    layout = _layout(config)
    _, clips, videos, _ = _current_features(config, encoder_id)
    model = load_model(layout, model_id)
    run = write_code_run(layout, model_id=model_id, collection=config.collection, hasher=model.hasher,
                         clip_features=clips, videos=videos, model_digest=model.digest)
    return {"collection": config.collection, "codes_run": str(run.run_dir), "written": run.written,
            "clips": run.manifest["rows"], "videos": len(videos)}


@task(name="evaluate: retrieval metrics and report", task_run_name="evaluate {config.collection}",
      cache_policy=NO_CACHE)
def evaluate(config: IndexRunConfig, encoder_id: str, model_id: str, run_id: str, context: dict) -> dict:
    layout = _layout(config)
    catalog, clips, _, texts = _current_features(config, encoder_id)
    model = load_model(layout, model_id)
    metrics = evaluate_codes(catalog, clips, texts, model.hasher)
    report_dir = write_report(layout, run_id, metrics, context)
    save_model_metrics(layout, model_id, {"collection": config.collection, **headline(metrics)})
    return {"report_dir": str(report_dir), "headline": headline(metrics)}


@task(name="publish: index version and CURRENT", task_run_name="publish {index}", cache_policy=NO_CACHE)
def publish(settings: RunSettings, index: str, model_id: str, processed: list[dict], metrics: dict[str, dict],
            keep: list[str] | None = None) -> dict:
    """Publish the processed collections plus the index's other collections (``keep``: which; None = all)."""
    crash_point("before_publish")
    layout = _layout(settings)
    model = load_model(layout, model_id)
    collections, thumbnails = [], {}
    for item in processed:
        run_dir = layout.location(item["codes_run"])
        manifest = next(m for p, m in committed_runs(run_dir.parent) if p == run_dir)
        joined = with_catalog_columns(read_code_run(run_dir, manifest), read_catalog(layout, item["collection"]))
        collections.append(CollectionCodes(item["collection"], layout.relative(run_dir), joined))
        thumbnails[item["collection"]] = codes_run_thumbnails(layout, model.encoder_id, model.sampling,
                                                              item["collection"], manifest)
    all_metrics = dict(metrics)
    done = {item["collection"] for item in processed}
    try:
        _, version_dir, previous = read_current_manifest(layout, index)
    except IndexNotFoundError:
        previous = None
    if previous is not None:
        carried = [c for c in previous["collections"] if c not in done and (keep is None or c in keep)]
        if carried and previous["model_id"] != model_id:
            raise RunFailedError(
                f"index {index!r} also holds {', '.join(carried)}, hashed with model {previous['model_id']}, "
                f"not {model_id}; re-hash the index first ('reelhash rehash --model {model_id} --index {index}') "
                f"or index into a new index"
            )
        for name in carried:
            collections.append(CollectionCodes(name, previous["collections"][name]["codes_run"],
                                               rows_of_collection(version_dir, previous, name)))
            thumbnails[name] = version_thumbnails(version_dir, previous, name)
            all_metrics.setdefault(name, previous.get("metrics", {}).get(name, {}))
        for note in check_quality_gate(layout, index, previous, {name: metrics.get(name, {}) for name in done},
                                       model_id=model_id, tolerance=settings.quality_tolerance,
                                       min_videos=settings.quality_min_videos, force=settings.force_publish):
            get_run_logger().warning(note)
    result = publish_index(
        layout, index, model_id=model_id, code_bits=model.hasher.n_bits, collections=collections,
        metrics=all_metrics, model_info=model_summary(model), thumbnails=thumbnails,
    )
    return {"version": result.version, "version_dir": str(result.version_dir), "published": result.published,
            "collections": sorted(c.collection for c in collections)}


def process_collection(config: IndexRunConfig, run_id: str) -> dict:
    """plan → extract → (fit) → hash → evaluate for one collection; ``config.model`` None means fit one.

    Holds the collection's lock throughout: its catalog, features and codes are shared with every index that
    covers it, and a run of another index waits here rather than interleaving (docs/architecture.md).
    """
    with collection_lock(_layout(config), config.collection, holder=f"{run_id} (index {config.index_name})"):
        return process_locked_collection(config, run_id)


def start_run_encoders(config: IndexRunConfig) -> EncoderPool:
    """The run's encoder actors, asked for before the catalog is read so that their models load meanwhile (most of
    a run's start-up; docs/architecture.md, "Start-up"). A run that finds nothing to decode shuts them down."""
    ensure_ray(config.ray)
    encoder_config, _ = run_spec(config)
    pool = start_encoder_pool(encoder_config, config.extract)
    get_run_logger().info("%d encoder actors, %s", len(pool.actors), "taken over from before the flow (started "
                          "while Prefect's API was starting)" if pool.taken_over else "started by the flow")
    return pool


def process_locked_collection(config: IndexRunConfig, run_id: str) -> dict:
    encoders = start_run_encoders(config)
    try:
        planned = plan(config)
        extracted = extract(config, encoders)
    except BaseException:
        encoders.shutdown(graceful=False)
        raise
    summary = catalog_summary(read_catalog(_layout(config), config.collection))
    publish_failures(config.collection, summary)
    check_failure_bound(summary, config.max_failure_rate, "extract")
    warnings: list[str] = []
    if config.model:
        model_id = config.model
    else:
        fitted = fit(config, extracted["encoder_id"], extracted["encoder"])
        model_id, warnings = fitted["model_id"], fitted["warnings"]
    config = config.model_copy(update={"model": model_id})
    codes = hash_codes(config, extracted["encoder_id"], model_id)
    context = {"collection": config.collection, "index": config.index_name, "model_id": model_id,
               "encoder": extracted["encoder"].get("arch", extracted["encoder_id"]),
               "random_weights": extracted["encoder"].get("random_weights", False), "files": summary["total"],
               "failed": summary["failed"], "decoded": extracted["decoded"], "clips": codes["clips"]}
    evaluated = evaluate(config, extracted["encoder_id"], model_id, f"{run_id}-{config.collection}", context)
    counts = {"collection": config.collection, "files": summary["total"], "ok": summary["ok"],
              "failed": summary["failed"], "deleted": summary["deleted"], **planned["changes"],
              "decoded": extracted["decoded"], "from_cache": extracted["cached"],
              "extract_seconds": extracted["seconds"], "clips": codes["clips"],
              "videos_indexed": codes["videos"]}
    return {"model_id": model_id, "codes": codes, "counts": counts, "metrics": evaluated["headline"],
            "report_dir": evaluated["report_dir"], "decoded_video_ids": extracted["decoded_video_ids"],
            "failures": [{"uri": u, "error": e} for u, e in summary["failures"]], "warnings": warnings}


def finish_run(settings: RunSettings, index: str, run_id: str, model_id: str, results: list[dict],
               keep: list[str] | None) -> dict | None:
    """Publish (unless disabled) and attach the counts and report artifacts."""
    published = None
    if settings.publish:
        published = publish(settings, index, model_id, [r["codes"] for r in results],
                            {r["counts"]["collection"]: r["metrics"] for r in results}, keep)
    create_table_artifact(key=f"{artifact_key(index)}-counts",
                          table=[{**r["counts"], "index_version": published and published["version"]} for r in results],
                          description=f"Counts of run {run_id}")
    create_markdown_artifact(
        key=f"{artifact_key(index)}-report",
        markdown="\n\n".join(report_markdown_for_ui(r["report_dir"]) for r in results),
        description=f"Report of run {run_id}",
    )
    return published


@flow(name="index_collection", log_prints=True)
def index_collection(config: IndexRunConfig) -> dict:
    """Index (or backfill) one collection and publish it, with the index's other collections, as a new version."""
    logger = get_run_logger()
    run_id = f"{config.collection}-{uuid.uuid4().hex[:8]}"
    layout = _layout(config)
    with index_run_lock(layout, config.index_name, wait_seconds=config.wait_seconds, holder=f"index_collection {run_id}"):
        config = config.model_copy(update={"model": resolve_model(config, config.index_name)})
        result = process_collection(config, run_id)
        published = finish_run(config, config.index_name, run_id, result["model_id"], [result], keep=None)
        if published:
            ensure_registered(layout, config.collection, config.source, config.index_name)
    counts = {key: value for key, value in result["counts"].items() if key != "collection"}
    counts["index_version"] = published["version"] if published else None
    logger.info("run %s: %s", run_id, counts)
    return {"run_id": run_id, "model_id": result["model_id"], "counts": counts, "metrics": result["metrics"],
            "report_dir": result["report_dir"], "published": published, "codes_run": result["codes"]["codes_run"],
            "failures": result["failures"], "decoded_video_ids": result["decoded_video_ids"],
            "warnings": result["warnings"]}


def artifact_key(name: str) -> str:
    # Prefect artifact keys allow only lowercase letters, digits and dashes.
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "collection"


if __name__ == "__main__":
    print(index_collection(IndexRunConfig(source=sys.argv[1], collection=sys.argv[2],
                                          encoder={"allow_random_weights": True})))
