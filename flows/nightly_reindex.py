"""The `nightly_reindex` Prefect flow: every registered collection of an index, incrementally, then one publish.

Each collection is compared with its catalog by fingerprint: new and changed files are decoded, deleted ones
are tombstoned (left out of the next version), unchanged ones cost a fingerprint read. All collections are
hashed with the index's model and published together, behind the quality gate. One run per index at a time.
Deploy it on a schedule with ``reelhash schedule`` or ``infra/prefect.yaml``; run it once with
``reelhash nightly --index NAME``.
"""

from __future__ import annotations

import sys
import uuid

from prefect import flow, get_run_logger

from flows.config import NightlyConfig
from flows.index_collection import _layout, finish_run, process_collection, resolve_model
from pipeline.locks import index_run_lock
from pipeline.registry import collection_source, index_collections


@flow(name="nightly_reindex", log_prints=True)
def nightly_reindex(config: NightlyConfig) -> dict:
    """Re-index every collection of an index and publish one new version (if anything changed)."""
    logger = get_run_logger()
    run_id = f"nightly-{config.index}-{uuid.uuid4().hex[:8]}"
    layout = _layout(config)
    collections = index_collections(layout, config.index)
    if not collections:
        raise ValueError(f"index {config.index!r} has no registered collections")
    with index_run_lock(layout, config.index, wait_seconds=config.wait_seconds, holder=f"nightly_reindex {run_id}"):
        model_id = resolve_model(config, config.index)
        results = []
        for name, entry in collections.items():
            run_config = config.for_collection(name, collection_source(entry)).model_copy(update={"model": model_id})
            result = process_collection(run_config, run_id)
            model_id = result["model_id"]
            results.append(result)
        published = finish_run(config, config.index, run_id, model_id, results, keep=list(collections))
    logger.info("run %s: %s", run_id, [r["counts"] for r in results])
    return {"run_id": run_id, "index": config.index, "model_id": model_id, "published": published,
            "collections": {r["counts"]["collection"]: {"counts": r["counts"], "metrics": r["metrics"],
                                                          "decoded_video_ids": r["decoded_video_ids"],
                                                          "failures": r["failures"], "report_dir": r["report_dir"],
                                                          "warnings": r["warnings"]}
                            for r in results}}


if __name__ == "__main__":
    print(nightly_reindex(NightlyConfig(index=sys.argv[1], encoder={"allow_random_weights": True})))
