"""The quality gate: a new index version is not published when its hash-ranking metrics fell.

Every publish passes it — index and nightly runs, backfills, and the runs that change the model (``--refit``,
``--model``, ``reelhash rehash``), where a regression is most likely. Metrics are compared on the same
evaluation set: with the published version's own numbers when they were measured on the same (video, caption)
pairs (``eval_set_key``) by the same model; otherwise the published model is scored again on the current set from
cached features (no decoding). ``--force`` publishes anyway. See README, "Quality gate and rollback".
"""

from __future__ import annotations

import pydantic

from hashing.hashers.storage import ModelLoadError
from pipeline.errors import QualityGateError
from pipeline.evaluate import headline
from pipeline.models import load_model
from pipeline.publish import quality_regressions
from pipeline.rehash import MissingFeaturesError, evaluate_model
from pipeline.store import StoreLayout


class QualityGateSettings(pydantic.BaseModel):
    """The gate's options, shared by every run that publishes."""

    force_publish: bool = pydantic.Field(default=False, description="Publish even when the quality gate objects.")
    quality_tolerance: float = pydantic.Field(
        default=0.1, ge=0.0, le=1.0,
        description="Refuse to publish when a metric falls by more than this fraction of the published value.",
    )
    quality_min_videos: int = pydantic.Field(
        default=20, ge=1, description="Gate only on evaluation sets of at least this many videos (smaller ones are noise)."
    )


def reference_metrics(layout: StoreLayout, published: dict, collection: str, candidate: dict,
                      model_id: str) -> tuple[dict | None, str | None]:
    """The published side of the comparison for one collection, or (None, why it cannot be gated)."""
    recorded = published.get("metrics", {}).get(collection)
    if recorded is None:
        return None, None  # a collection new to the index has nothing to regress from
    same_set = recorded.get("eval_set_key") is not None and recorded.get("eval_set_key") == candidate.get("eval_set_key")
    if published["model_id"] == model_id or same_set:
        return recorded, None
    try:
        old_model = load_model(layout, published["model_id"])
        return headline(evaluate_model(layout, collection, old_model)), None
    except (MissingFeaturesError, ModelLoadError, FileNotFoundError) as error:
        return None, (f"{collection}: not gated, the published model {published['model_id']} cannot be scored on the "
                      f"current evaluation set ({str(error).splitlines()[0]})")


def check_quality_gate(layout: StoreLayout, index: str, published: dict | None, candidates: dict[str, dict], *,
                       model_id: str, tolerance: float, min_videos: int, force: bool) -> list[str]:
    """Raise ``QualityGateError`` when a collection's metrics fell (unless ``force``); returns notes on what was
    not gated (to be logged), so a skipped comparison is never silent."""
    if published is None:
        return []
    problems, notes = [], []
    for collection, candidate in sorted(candidates.items()):
        reference, note = reference_metrics(layout, published, collection, candidate, model_id)
        if note:
            notes.append(note)
        if reference is not None:
            problems += [f"{collection}: {problem}"
                         for problem in quality_regressions(reference, candidate, tolerance, min_videos)]
    if problems and not force:
        change = "" if published["model_id"] == model_id else f" (model {published['model_id']} → {model_id})"
        raise QualityGateError(
            f"quality gate: not publishing a new version of {index!r}{change}, metrics fell below the published "
            f"version: " + "; ".join(problems) + ". Inspect the report, then re-run with --force to publish anyway."
        )
    return notes
