"""Deployments of `nightly_reindex`: a cron schedule, one run at a time per index, served locally.

``reelhash schedule --index NAME`` serves the deployment ``nightly-NAME`` from this process (Prefect's
``serve``): the schedule pauses when the process stops. For a work pool (process, Docker, Kubernetes),
deploy ``infra/prefect.yaml`` instead.
"""

from __future__ import annotations

import asyncio

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.runner import Runner
from prefect.schedules import Cron

from flows.config import NightlyConfig
from flows.nightly_reindex import nightly_reindex
from pipeline.store import StoreLayout

DEFAULT_CRON = "0 2 * * *"


def deployment_name(index: str) -> str:
    return f"nightly-{index}"


def nightly_deployment(index: str, store: str | None, cron: str = DEFAULT_CRON, timezone: str = "UTC",
                       settings: dict | None = None) -> RunnerDeployment:
    """The nightly deployment of one index; the store path is made absolute so any runner finds it."""
    config = NightlyConfig(index=index, store=str(StoreLayout.from_option(store).root), **(settings or {}))
    return nightly_reindex.to_deployment(
        name=deployment_name(index),
        schedule=Cron(cron, timezone=timezone),
        parameters={"config": config.model_dump(mode="json")},
        # A second run of the same index queues behind the first instead of interleaving its writes.
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        tags=["reelhash", f"index:{index}"],
        description=f"Nightly incremental re-index of every collection of index {index!r}.",
    )


async def _serve(deployment: RunnerDeployment, run_once: bool) -> None:
    runner = Runner(name=f"reelhash-{deployment.name}", pause_on_shutdown=False)
    await runner.aadd_deployment(deployment)
    await runner.start(run_once=run_once)


def serve_nightly(*, index: str, store: str | None, cron: str, timezone: str, run_once: bool = False,
                  settings: dict | None = None) -> int:
    deployment = nightly_deployment(index, store, cron, timezone, settings)
    if not run_once:
        print(f"serving deployment nightly_reindex/{deployment.name} ({cron}, {timezone}); stop with Ctrl-C")
    asyncio.run(_serve(deployment, run_once))
    return 0
