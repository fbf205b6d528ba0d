"""The deployment files in infra/ are consistent with the code they deploy (no Kubernetes here: these checks are
what can be verified without one)."""

from __future__ import annotations

import importlib
from pathlib import Path

import ray
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"


def _load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["template"]["spec"]["containers"]


def test_kuberay_manifests_use_this_ray_version_and_one_image_everywhere():
    cluster, job = _load("kuberay/raycluster.yaml"), _load("kuberay/rayjob.yaml")
    assert cluster["kind"] == "RayCluster" and job["kind"] == "RayJob"
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == ray.__version__
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        images = {container["image"] for group in groups for container in _containers(group)}
        assert len(images) == 1  # Ray needs the same versions on every node and on the driver
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert job["spec"]["entrypoint"].startswith("reelhash nightly ")


def test_prefect_deployments_point_at_real_flows_and_at_the_clusters_head_service():
    cluster = _load("kuberay/raycluster.yaml")
    for name in ("prefect.yaml", "prefect-kuberay.yaml"):
        for deployment in _load(name)["deployments"]:
            module, function = deployment["entrypoint"].removesuffix(".py").replace(".py:", ":").split(":")
            flow = getattr(importlib.import_module(module.replace("/", ".")), function)
            assert flow.name == function
    [kuberay] = _load("prefect-kuberay.yaml")["deployments"]
    env = kuberay["work_pool"]["job_variables"]["env"]
    assert env["RAY_ADDRESS"] == f"{cluster['metadata']['name']}-head-svc:6379"
    assert kuberay["parameters"]["config"]["store"].startswith("s3://")
