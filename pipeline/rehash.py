"""Re-hash a published index with another model, from cached embeddings only: no decoding, no encoder, no Ray.

A backfill after training a new model: for every collection of the index's current version, take the
collection's current catalog and the cached clip features for the new model's encoder + sampling, hash them
into a committed code run, join the catalog columns and publish everything as one new index version.
Each collection is evaluated with the new model on its held-out captions, as ``index_collection`` does.

A collection without cached features for the model's encoder + sampling is an error that says how to
extract them (``reelhash index --model NEW``): a rehash never decodes a video.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from hashing.hashers import Hasher
from pipeline.catalog import read_catalog
from pipeline.codes import CodeRun, read_code_run, write_code_run
from pipeline.evaluate import evaluate_codes
from pipeline.features import (
    CollectionFeatures,
    cached_failures,
    cached_fingerprints,
    clip_feature_dir,
    load_collection_features,
    sampling_tag,
)
from pipeline.models import StoredModel, load_model, model_summary, resolve_model_id
from pipeline.publish import CollectionCodes, PublishResult, publish_index, read_current_manifest, with_catalog_columns
from pipeline.sampling import SamplingConfig
from pipeline.shards import MANIFEST_NAME
from pipeline.thumbnails import codes_run_thumbnails
from pipeline.store import StoreLayout, read_json

MAX_LISTED_VIDEOS = 5


class MissingFeaturesError(FileNotFoundError):
    """A collection lacks cached CLIP features for the encoder + sampling a step needs (and would have to decode)."""


def extract_command(collection: str, encoder_config: BaseModel, sampling: SamplingConfig) -> str:
    """A `reelhash index` command that caches features of this encoder + sampling for a collection.

    ``--refit`` because an index that already has a model would otherwise hash (and extract) with that model's
    encoder; a scratch ``--index`` keeps the user's indexes untouched.
    """
    fields = encoder_config.model_dump()
    if fields.get("kind", "open_clip") == "open_clip":
        if fields.get("checkpoint_path"):
            weights = f"--clip-checkpoint {fields['checkpoint_path']}"
        elif fields.get("pretrained"):
            weights = f"--clip-pretrained {fields['pretrained']}"
        else:
            weights = "--random-weights"
        encoder = f"--clip-arch {fields['arch']} {weights}"
    else:
        encoder = f"<options of the encoder {fields}>"
    return (f"reelhash index SOURCE --collection {collection} --index SCRATCH_INDEX --refit {encoder} "
            f"--sampling {sampling.mode} --clip-seconds {sampling.clip_seconds:g} "
            f"--frames-per-clip {sampling.frames_per_clip}")


def model_extract_command(collection: str, model_id: str) -> str:
    """A `reelhash index` command that caches the features a stored model needs (its encoder + sampling)."""
    return f"reelhash index SOURCE --collection {collection} --model {model_id} --index SCRATCH_INDEX"


def check_cached_features(
    layout: StoreLayout, collection: str, *, encoder_id: str, sampling: SamplingConfig, how_to_extract: str
) -> dict[str, int]:
    """Raise ``MissingFeaturesError`` unless every ok video of the collection has cached clip features.

    Videos whose decoding already failed for this encoder + sampling are not required. Reads only the catalog
    and the feature run manifests (cheap); returns ``{"videos": number of videos with features}``.
    ``how_to_extract`` is the command the error message recommends.
    """
    catalog = read_catalog(layout, collection)
    if catalog is None:
        raise MissingFeaturesError(f"collection '{collection}' has no catalog under {layout.root}; index it first: "
                                   f"{how_to_extract}")
    feature_dir = clip_feature_dir(layout, encoder_id, collection, sampling)
    ok = [r for r in catalog.to_pylist() if r["status"] == "ok"]
    missing = uncached_videos(ok, feature_dir)
    cached = cached_fingerprints(feature_dir)
    with_features = sum(cached.get(r["video_id"]) == r["fingerprint"] for r in ok)
    if missing or not with_features:
        examples = ", ".join(r["uri"] for r in missing[:MAX_LISTED_VIDEOS]) + (", …" if len(missing) > MAX_LISTED_VIDEOS else "")
        what = f"{len(missing)} of its {len(ok)} indexable videos lack them ({examples})" if missing else "no video has them"
        raise MissingFeaturesError(
            f"collection '{collection}' has no cached CLIP features for encoder {encoder_id} with sampling "
            f"{sampling_tag(sampling)}: {what}. This step works from cached features and never decodes video; "
            f"extract them first with: {how_to_extract} (it decodes only the videos that lack these features; "
            "SCRATCH_INDEX is any index name you do not mind publishing to)"
        )
    return {"videos": with_features}


def uncached_videos(rows: list[dict], feature_dir: Path) -> list[dict]:
    """Catalog rows with neither cached clip features nor a recorded decode failure for their fingerprint."""
    cached, failed = cached_fingerprints(feature_dir), cached_failures(feature_dir)
    return [r for r in rows if cached.get(r["video_id"]) != r["fingerprint"]
            and failed.get(r["video_id"], {}).get("fingerprint") != r["fingerprint"]]


# ------------------------------------------------------------------------------------------- steps


@dataclass
class RehashPlan:
    """What a rehash does: which index version it starts from and which collections it re-hashes."""

    index: str
    from_version: int
    from_model_id: str
    model_id: str
    code_bits: int
    collections: dict[str, int]  # collection → number of videos with cached features
    from_metrics: dict  # the published version's metrics (collection → headline), for comparison

    def as_dict(self) -> dict:
        return asdict(self)


def plan_rehash(layout: StoreLayout, index: str, model_id: str) -> RehashPlan:
    """Check that the index is published, the model loads and every collection has cached features."""
    version, _, manifest = read_current_manifest(layout, index)
    model = load_model(layout, resolve_model_id(layout, model_id))
    names = sorted(manifest.get("collections", {}))
    if not names:
        raise ValueError(f"index '{index}' v{version} holds no collection: nothing to re-hash")
    counts, problems = {}, []
    for name in names:
        try:
            counts[name] = check_cached_features(layout, name, encoder_id=model.encoder_id, sampling=model.sampling,
                                                 how_to_extract=model_extract_command(name, model_id))["videos"]
        except MissingFeaturesError as error:
            problems.append(str(error))
    if problems:
        raise MissingFeaturesError(f"cannot re-hash index '{index}' with model {model_id}:\n" + "\n".join(problems))
    return RehashPlan(index, version, manifest.get("model_id", ""), model.model_id, model.hasher.n_bits, counts,
                      manifest.get("metrics", {}))


def collection_features(layout: StoreLayout, collection: str, model: StoredModel) -> CollectionFeatures:
    """The collection's catalog and cached features for the model's encoder + sampling (all must be there)."""
    found = load_collection_features(layout, collection, model.encoder_id, model.sampling)
    feature_dir = clip_feature_dir(layout, model.encoder_id, collection, model.sampling)
    if found.clips is None or uncached_videos(found.missing, feature_dir):
        # The features changed since the plan was checked; report it the same way.
        check_cached_features(layout, collection, encoder_id=model.encoder_id, sampling=model.sampling,
                              how_to_extract=model_extract_command(collection, model.model_id))
        raise MissingFeaturesError(f"collection '{collection}' lost cached features while being re-hashed; re-run")
    return found


def hash_collection(layout: StoreLayout, collection: str, model: StoredModel) -> CodeRun:
    """Hash a collection's cached clip features with the model into a committed code run (idempotent)."""
    found = collection_features(layout, collection, model)
    return write_code_run(layout, model_id=model.model_id, collection=collection, hasher=model.hasher,
                          clip_features=found.clips, videos=found.videos, model_digest=model.digest)


def evaluate_features(found: CollectionFeatures, hasher: Hasher) -> dict:
    """``evaluate_codes`` on a collection's held-out captions, from its cached embeddings only.

    A caption whose embedding is not cached cannot be scored without running the text encoder: it is left out
    (counted in ``captions_without_cached_embedding``).
    """
    if found.clips is None:
        return {"evaluated": False, "reason": "no video has cached clip features"}
    captions = found.catalog["caption"]
    unscorable = pc.and_(pc.is_valid(captions), pc.invert(pc.is_in(captions, value_set=pa.array(sorted(found.texts),
                                                                                              pa.string()))))
    metrics = evaluate_codes(found.catalog.filter(pc.invert(unscorable)), found.clips, found.texts, hasher)
    ok = pc.equal(found.catalog["status"], "ok")
    metrics["captions_without_cached_embedding"] = pc.sum(pc.and_(ok, unscorable).cast(pa.int64())).as_py() or 0
    return metrics


def evaluate_model(layout: StoreLayout, collection: str, model: StoredModel) -> dict:
    """The model's retrieval metrics on one collection's held-out captions (as ``index_collection`` scores them)."""
    return evaluate_features(collection_features(layout, collection, model), model.hasher)


def publish_rehash(
    layout: StoreLayout, index: str, model: StoredModel, code_runs: dict[str, Path | str], metrics: dict[str, dict]
) -> PublishResult:
    """Publish the collections' code runs (joined with their current catalogs) as a new index version.

    ``metrics`` is per collection (collection → headline metrics), as ``index_collection`` records them.
    """
    collections, thumbnails = [], {}
    for name, run_dir in sorted(code_runs.items()):
        run_dir = layout.location(run_dir)
        manifest = read_json(run_dir / MANIFEST_NAME)
        joined = with_catalog_columns(read_code_run(run_dir, manifest), read_catalog(layout, name))
        collections.append(CollectionCodes(name, layout.relative(run_dir), joined))
        thumbnails[name] = codes_run_thumbnails(layout, model.encoder_id, model.sampling, name, manifest)
    return publish_index(layout, index, model_id=model.model_id, code_bits=model.hasher.n_bits,
                         collections=collections, metrics=metrics, model_info=model_summary(model),
                         thumbnails=thumbnails)
