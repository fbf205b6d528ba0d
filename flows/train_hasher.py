"""The `train_hasher` Prefect flow: prepare data → train one model per bit length → report.

The per-method work lives in ``pipeline/training/<method>.py``; this flow only orders it into coarse,
named tasks and publishes artifacts (a metrics table per bit length and the markdown report).
Run as a file: ``python -m flows.train_hasher METHOD COLLECTION``.
"""

from __future__ import annotations

import sys
import uuid

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from flows.index_collection import artifact_key
from hashing.plots import plot_loss_curves
from pipeline.evaluate import report_markdown_for_ui
from pipeline.locks import collection_lock
from pipeline.ray_runtime import ensure_ray
from pipeline.store import StoreLayout, atomic_write_json, atomic_write_text
from pipeline.training.base import TrainedModel, TrainRunConfig, training_method


@task(name="prepare: training data", cache_policy=NO_CACHE)
def prepare_data(config: TrainRunConfig) -> dict:
    ensure_ray(config.ray)
    layout = StoreLayout.from_option(config.store)
    # Preparing writes the collection's clip cache and reads its catalog and features: shared with index runs.
    with collection_lock(layout, config.collection, holder=f"train_hasher {config.method}"):
        prepared = training_method(config.method).prepare(layout, config)
    get_run_logger().info("prepared %s training data: %s", config.method, {k: v for k, v in prepared.items() if not isinstance(v, (list, dict))})
    return prepared


@task(name="train: one bit length", task_run_name="train {config.method} {n_bits} bits", cache_policy=NO_CACHE)
def train_bits(config: TrainRunConfig, prepared: dict, n_bits: int) -> dict:
    logger = get_run_logger()
    name = config.model_name(n_bits)  # the version id (name + content digest) exists only once training ends
    progress_id = create_progress_artifact(0.0, key=f"{artifact_key(name)}-epochs",
                                           description=f"Epochs of {name} trained in this run")

    def report_epoch(done: int, epochs: int, losses: dict[str, float]) -> None:
        # A DSMHN model trains for tens of minutes on a CPU: the UI shows each epoch as it ends.
        update_progress_artifact(progress_id, 100.0 * done / epochs)
        logger.info("%s: epoch %d/%d, loss %.4f", name, done, epochs, losses["total"])

    trained = training_method(config.method).train(StoreLayout.from_option(config.store), config, prepared, n_bits,
                                                   on_epoch=report_epoch)
    logger.info("trained %s in %.0f s: %s", trained.model_id, trained.seconds, trained.metrics)
    return trained.as_dict()


@task(name="report: metrics, loss curves, ablation", cache_policy=NO_CACHE)
def report(config: TrainRunConfig, prepared: dict, results: list[dict], run_id: str) -> str:
    layout = StoreLayout.from_option(config.store)
    models = [TrainedModel(**r) for r in results]
    extra_metrics, extra_lines = training_method(config.method).extra_report(layout, config, prepared, models)
    directory = layout.reports_dir(run_id)
    atomic_write_json(directory / "metrics.json", {"config": config.model_dump(), "prepared": prepared,
                                                   "models": results, "extra": extra_metrics})
    lines = [f"# train_hasher report — {run_id}", "",
             f"Method **{config.method}** on collection **{config.collection}**, bits {config.bits}.", ""]
    for model in models:
        lines.append(f"## {model.model_id} ({model.n_bits} bits, {model.seconds:.0f} s)")
        lines.append("")
        lines += [f"- {key}: {value}" for key, value in _flatten(model.metrics).items()]
        if model.history:
            png = plot_loss_curves(model.history, directory / f"loss-{model.n_bits}b.png",
                                   f"{model.model_id}: training loss")
            lines += ["", f"![loss {model.n_bits} bits]({png.name})"]
        lines.append("")
    lines += extra_lines
    atomic_write_text(directory / "report.md", "\n".join(lines) + "\n")
    return str(directory)


def _flatten(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@flow(name="train_hasher", log_prints=True)
def train_hasher(config: TrainRunConfig) -> dict:
    """Train hash models of one method for every requested bit length."""
    run_id = f"train-{config.method}-{config.collection}-{uuid.uuid4().hex[:8]}"
    prepared = prepare_data(config)
    results = [train_bits(config, prepared, n_bits) for n_bits in config.bits]
    report_dir = report(config, prepared, results, run_id)
    table = [{"model_id": r["model_id"], "bits": r["n_bits"], "seconds": round(r["seconds"], 1),
              **{k: v for k, v in _flatten(r["metrics"]).items() if isinstance(v, (int, float))}} for r in results]
    key = artifact_key(f"train-{config.method}-{config.collection}")
    create_table_artifact(key=key, table=table, description=f"Models trained by {run_id}")
    create_markdown_artifact(key=f"{key}-report", markdown=report_markdown_for_ui(report_dir),
                             description=f"Report of {run_id}")
    return {"run_id": run_id, "models": results, "report_dir": report_dir, "prepared": prepared}


if __name__ == "__main__":
    print(train_hasher(TrainRunConfig(method=sys.argv[1], collection=sys.argv[2])))
