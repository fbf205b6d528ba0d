"""The `rehash_index` Prefect flow: plan → hash each collection → evaluate → publish, from cached embeddings.

A backfill after training a new model (e.g. ``reelhash train --method clip4hashing``): every collection of the
index's current version is re-hashed with the new model from its cached CLIP features and the result is
published as the next version. Nothing is decoded or encoded and Ray is not used; the steps live in
``pipeline/rehash.py``. Run as a file: ``python -m flows.rehash_index MODEL_ID INDEX``.
"""

from __future__ import annotations

import sys
import uuid

import pydantic
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.index_collection import artifact_key
from pipeline.evaluate import headline, report_markdown_for_ui, write_report
from pipeline.locks import collection_lock, index_run_lock
from pipeline.models import load_model, resolve_model_id
from pipeline.publish import read_current_manifest
from pipeline.quality_gate import QualityGateSettings, check_quality_gate
from pipeline.rehash import evaluate_model, hash_collection, plan_rehash, publish_rehash
from pipeline.store import StoreLayout, validate_name


class RehashRunConfig(QualityGateSettings):
    """One `rehash_index` run: which published index to re-hash with which stored model."""

    model: str = pydantic.Field(description="Id of the stored model to hash with (models/<id>/).")
    index: str = pydantic.Field(description="Published index whose collections are re-hashed.")
    store: str | None = pydantic.Field(default=None, description="Store root; default $REELHASH_STORE or ./reelhash-data.")
    wait_seconds: float = pydantic.Field(default=0.0, ge=0.0,
                                         description="Wait this long for another run of the same index to finish.")

    @pydantic.field_validator("model", "index")
    @classmethod
    def _valid_name(cls, value: str, info: pydantic.ValidationInfo) -> str:
        return validate_name(value, info.field_name)


def _layout(config: RehashRunConfig) -> StoreLayout:
    return StoreLayout.from_option(config.store)


@task(name="plan: index, model and cached features", cache_policy=NO_CACHE)
def plan(config: RehashRunConfig) -> dict:
    planned = plan_rehash(_layout(config), config.index, config.model)
    get_run_logger().info("re-hashing index %s v%d (model %s) with %s: %s", planned.index, planned.from_version,
                          planned.from_model_id, planned.model_id, planned.collections)
    return planned.as_dict()


@task(name="hash: write code shards", task_run_name="hash {collection}", cache_policy=NO_CACHE)
def hash_codes(config: RehashRunConfig, collection: str) -> dict:
    run = hash_collection(_layout(config), collection, load_model(_layout(config), config.model))
    return {"collection": collection, "codes_run": str(run.run_dir), "written": run.written,
            "clips": run.manifest["rows"], "videos": len(run.manifest["videos"])}


@task(name="evaluate: retrieval metrics and report", task_run_name="evaluate {collection}", cache_policy=NO_CACHE)
def evaluate(config: RehashRunConfig, collection: str, run_id: str, context: dict) -> dict:
    layout = _layout(config)
    metrics = evaluate_model(layout, collection, load_model(layout, config.model))
    report_dir = write_report(layout, run_id, metrics, {**context, "collection": collection})
    return {"report_dir": str(report_dir), "headline": headline(metrics)}


@task(name="publish: index version and CURRENT", cache_policy=NO_CACHE)
def publish(config: RehashRunConfig, codes: list[dict], metrics: dict[str, dict]) -> dict:
    layout = _layout(config)
    _, _, published = read_current_manifest(layout, config.index)
    # A new model is exactly when a regression is most likely: the gate runs here as for index runs.
    for note in check_quality_gate(layout, config.index, published, metrics, model_id=config.model,
                                   tolerance=config.quality_tolerance, min_videos=config.quality_min_videos,
                                   force=config.force_publish):
        get_run_logger().warning(note)
    result = publish_rehash(layout, config.index, load_model(layout, config.model),
                            {c["collection"]: c["codes_run"] for c in codes}, metrics)
    return {"version": result.version, "version_dir": str(result.version_dir), "published": result.published}


@flow(name="rehash_index", log_prints=True)
def rehash_index(config: RehashRunConfig) -> dict:
    """Re-hash every collection of a published index with another model and publish a new version."""
    run_id = f"rehash-{config.index}-{uuid.uuid4().hex[:8]}"
    layout = _layout(config)
    # An alias names its newest version now; the whole run (codes, publish) uses that exact version.
    config = config.model_copy(update={"model": resolve_model_id(layout, config.model)})
    # The same per-index run lock as index_collection / nightly_reindex: a rehash must not interleave with them.
    with index_run_lock(layout, config.index, wait_seconds=config.wait_seconds, holder=f"rehash_index {run_id}"):
        planned = plan(config)
        codes = []
        for collection in planned["collections"]:
            with collection_lock(layout, collection, holder=f"rehash_index {run_id}"):
                codes.append(hash_codes(config, collection))
        context = {"index": config.index, "model_id": config.model, "from_version": planned["from_version"],
                   "from_model_id": planned["from_model_id"], "code_bits": planned["code_bits"], "decoded": 0}
        evaluated = {c["collection"]: evaluate(config, c["collection"], f"{run_id}-{c['collection']}",
                                               {**context, "clips": c["clips"]}) for c in codes}
        published = publish(config, codes, {name: e["headline"] for name, e in evaluated.items()})
    key = artifact_key(f"rehash-{config.index}")
    create_table_artifact(key=key, table=[{"collection": c["collection"], "videos": c["videos"], "clips": c["clips"],
                                           "new_codes": c["written"], "version": published["version"]} for c in codes],
                          description=f"Collections re-hashed by {run_id}")
    create_markdown_artifact(
        key=f"{key}-report",
        markdown="\n\n".join(report_markdown_for_ui(e["report_dir"]) for e in evaluated.values()),
        description=f"Report of {run_id}",
    )
    get_run_logger().info("run %s: index %s %s v%d", run_id, config.index,
                          "published" if published["published"] else "unchanged, still", published["version"])
    return {"run_id": run_id, "index": config.index, "model_id": config.model, "plan": planned, "codes": codes,
            "metrics": {name: e["headline"] for name, e in evaluated.items()},
            "report_dirs": {name: e["report_dir"] for name, e in evaluated.items()}, "published": published}


if __name__ == "__main__":
    print(rehash_index(RehashRunConfig(model=sys.argv[1], index=sys.argv[2])))
