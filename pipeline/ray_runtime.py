"""Start or join Ray with settings that neither starve nor hang on a small machine.

Two facts measured on this project's 2-core machines drive the defaults (docs/environment.md §2.3):
with ``num_cpus`` equal to the physical cores a decode → encode → write pipeline starves and hangs
silently, and an actor pool asking for a GPU that does not exist waits forever. So a local instance
declares more logical CPUs than cores, and ``check_schedulable`` refuses, before a pipeline starts, an actor
request that no node of the cluster can ever hold (docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import logging
import os
import sys

import pydantic
import ray

logger = logging.getLogger(__name__)


class RayConfig(pydantic.BaseModel):
    """How to reach Ray. ``address=None`` and no ``RAY_ADDRESS`` starts a local instance."""

    address: str | None = None
    local_num_cpus: int | None = pydantic.Field(
        default=None, description="Logical CPUs of a local instance; default max(4, 2 × cores)."
    )
    object_store_mb: int = 512
    log_to_driver: bool = False
    progress_bars: bool = True
    forward_store_env: bool = pydantic.Field(
        default=True,
        description="When joining a cluster, pass the driver's object-store settings (AWS_*, REELHASH_STORE…) to "
                    "the job's workers; turn off where nodes have their own credentials (an IAM role).")


# What a worker on another node needs to reach the same store and media as the driver.
STORE_ENV_PREFIXES = ("AWS_", "REELHASH_", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_")


def store_env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ if environ is None else environ)
    return {key: value for key, value in environ.items() if key.startswith(STORE_ENV_PREFIXES)}


def default_local_cpus() -> int:
    return max(4, 2 * (os.cpu_count() or 1))


def cluster_address(config: RayConfig) -> str | None:
    """The Ray cluster a run joins (``config.address``, else ``RAY_ADDRESS``), or None: it starts a local instance."""
    return config.address or os.environ.get("RAY_ADDRESS") or None


def ensure_ray(config: RayConfig | None = None) -> dict:
    """Connect to (or start) Ray once per process and return its cluster resources."""
    config = config or RayConfig()
    if not ray.is_initialized():
        address = cluster_address(config)
        # Ray 2.60 turns on token auth for local clusters; a private single-machine instance does not need it.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Usage statistics go to Ray's servers, which an archive's machines need not reach; with them off Ray Data
        # also skips its usage-collection actor (~190 MB resident) on every cluster this driver joins.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address:
            logger.info("joining Ray cluster at %s", address)
            forwarded = store_env_vars() if config.forward_store_env else {}
            ray.init(address=address, log_to_driver=config.log_to_driver, ignore_reinit_error=True,
                     runtime_env={"env_vars": forwarded} if forwarded else None)
        else:
            ray.init(
                num_cpus=config.local_num_cpus or default_local_cpus(),
                object_store_memory=config.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                log_to_driver=config.log_to_driver,
                ignore_reinit_error=True,
                configure_logging=False,
            )
    set_ray_data_progress_bars(config.progress_bars)
    return ray.cluster_resources()


def set_ray_data_progress_bars(enabled: bool) -> None:
    """Ray Data's progress bars on or off without importing Ray Data here: index runs do not use it, and importing
    it would cost every process that imports this module (the actors' workers among them) ~100 MB and some tenths
    of a second. Ray Data reads the variable when it is imported; where it already is, its context is set
    directly."""
    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "0" if enabled else "1"
    if "ray.data" in sys.modules:
        sys.modules["ray.data"].DataContext.get_current().enable_progress_bars = enabled


def cluster_gpu_count() -> int:
    """GPUs Ray can schedule on; actors request ``num_gpus`` only when this is positive."""
    return int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0


def alive_node_count() -> int:
    """Nodes of the Ray cluster this process is connected to that are alive."""
    return sum(1 for node in ray.nodes() if node.get("Alive"))


class UnschedulableError(RuntimeError):
    """An actor or task asks for more than any node of the Ray cluster has."""


def check_schedulable(requests: dict[str, dict[str, float]], nodes: list[dict] | None = None) -> None:
    """Raise UnschedulableError for the first request (name → resources, e.g. ``{"CPU": 1, "GPU": 1}``) that no
    alive node can hold even when idle: Ray would keep it pending forever without an error."""
    if nodes is None:
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    for name, request in requests.items():
        wanted = {key: amount for key, amount in request.items() if amount}
        if not any(all(node.get(key, 0) >= amount for key, amount in wanted.items()) for node in nodes):
            largest = {key: max((node.get(key, 0) for node in nodes), default=0) for key in wanted}
            raise UnschedulableError(
                f"no Ray node can run the {name}: it needs {_format(wanted)}, the largest node has {_format(largest)}; "
                "lower the request (e.g. ExtractConfig.encoder_cpus) or add a larger node")


def _format(resources: dict[str, float]) -> str:
    return ", ".join(f"{amount:g} {key}" for key, amount in sorted(resources.items())) or "nothing"
