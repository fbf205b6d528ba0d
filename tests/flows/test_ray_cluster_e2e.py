"""A real two-node Ray cluster on the loopback (``ray start --head`` + ``ray start --address``, each node with its
own temp dir), joined by ``reelhash index`` through ``RAY_ADDRESS``. Store and media are in the S3 server only, and
the nodes are started WITHOUT object-store credentials: the workers reach the bucket only through what the job
forwards (``RayConfig.forward_store_env``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.features import cached_fingerprints
from pipeline.publish import read_current_manifest, verify_version
from pipeline.sample_collection import make_sample_collection
from pipeline.shards import committed_runs
from pipeline.store import StoreLayout
from s3_server import pick_ports, upload_collection

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def _node_ports() -> list[str]:
    # Two nodes on one machine: every fixed default port of a node's agents must differ between them.
    agent, grpc, metrics, runtime_env = pick_ports(4)
    return [f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
            f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}"]


def _alive_nodes(address: str, env: dict) -> list[dict]:
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps([{'id': n['NodeID'], 'cpus': n['Resources'].get('CPU', 0)} for n in ray.nodes() "
            "if n['Alive']]))" % address)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []


@pytest.fixture(scope="module")
def two_node_cluster():
    [port] = pick_ports(1)
    address = f"127.0.0.1:{port}"
    # The nodes know nothing of the bucket; RAY_ADDRESS must not point them at the test's own instance.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    temp_dirs = [f"/tmp/rh-{uuid.uuid4().hex[:6]}" for _ in range(2)]  # short: unix socket paths are bounded
    common = ["--disable-usage-stats", "--include-dashboard=false"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={temp_dirs[0]}",
                        *common, *_node_ports()], env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([RAY, "start", f"--address={address}", "--num-cpus=3", f"--temp-dir={temp_dirs[1]}",
                        "--disable-usage-stats", *_node_ports()], env=env, check=True, capture_output=True,
                       timeout=180)
        deadline = time.monotonic() + 120
        while len(nodes := _alive_nodes(address, env)) < 2 and time.monotonic() < deadline:
            time.sleep(2)
        assert len(nodes) == 2, nodes
        yield {"address": address, "nodes": nodes}
    finally:
        for temp_dir in temp_dirs:  # stop only this cluster's processes (`ray stop` would stop every instance)
            subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)


def test_index_runs_on_a_two_node_cluster_from_the_object_store(tmp_path, s3_prefix, two_node_cluster, prefect_api):
    from prefect.settings import PREFECT_API_URL

    make_sample_collection(tmp_path / "news", 4, seed=21)
    upload_collection(tmp_path / "news", f"{s3_prefix}/media/news")
    store = f"{s3_prefix}/store"
    env = {**os.environ, "RAY_ADDRESS": two_node_cluster["address"], "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "index", f"{s3_prefix}/media/news/", "--collection", "news", "--index",
         "main", "--store", store, "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2",
         "--method", "lsh", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["published"]["version"] == 1

    layout = StoreLayout.from_option(store)
    _, version_dir, manifest = read_current_manifest(layout, "main")
    assert manifest["counts"]["videos"] == 4 and verify_version(version_dir, manifest) == []
    # The parts were written by workers of the cluster (the head has 1 CPU, too few for the 2-CPU encoder actor, so
    # encoding ran on the second node); the driver only committed the manifests.
    feature_sets = [p for p in layout.root.joinpath("features").glob("*/news/*") if p.name != "text"]
    [feature_dir] = feature_sets
    assert len(cached_fingerprints(feature_dir)) == 4
    writers = {node for _, run in committed_runs(feature_dir) for node in run["written_on_nodes"]}
    assert writers and writers <= {node["id"] for node in two_node_cluster["nodes"]}
    assert not (tmp_path / "reelhash-data").exists()
