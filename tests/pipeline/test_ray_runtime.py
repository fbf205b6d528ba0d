"""Tests for pipeline/ray_runtime.py: requests no node can hold are refused before a pipeline starts; Ray Data
stays out of the processes that index."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.ray_runtime import UnschedulableError, check_schedulable

TWO_NODES = [{"CPU": 4.0, "memory": 8e9}, {"CPU": 8.0, "GPU": 1.0}]


def test_requests_some_node_can_hold_pass():
    check_schedulable({"encoder actor": {"CPU": 8, "GPU": 1}, "decode task": {"CPU": 1}, "idle": {"GPU": 0}},
                      nodes=TWO_NODES)


def test_a_gpu_request_on_a_cluster_without_gpus_is_refused_in_one_line():
    with pytest.raises(UnschedulableError) as caught:
        check_schedulable({"encoder actor": {"CPU": 1, "GPU": 1}}, nodes=[{"CPU": 4.0}])
    message = str(caught.value)
    assert "\n" not in message
    assert "encoder actor" in message and "1 GPU" in message and "0 GPU" in message and "encoder_cpus" in message


def test_resources_must_be_on_one_node_not_summed_over_the_cluster():
    with pytest.raises(UnschedulableError, match="the largest node has 8 CPU, 1 GPU"):
        check_schedulable({"encoder actor": {"CPU": 9, "GPU": 1}}, nodes=TWO_NODES)


def test_the_live_cluster_is_read_when_no_nodes_are_given(ray_instance):
    check_schedulable({"decode task": {"CPU": 1}})
    with pytest.raises(UnschedulableError):
        check_schedulable({"encoder actor": {"GPU": 1}})


PROGRESS_BARS_SCRIPT = """
import sys
import pipeline.encoder_pool, pipeline.extract
assert "ray.data" not in sys.modules, "an extraction module imports Ray Data"
from pipeline.ray_runtime import set_ray_data_progress_bars
set_ray_data_progress_bars(False)
import ray.data
assert not ray.data.DataContext.get_current().enable_progress_bars
set_ray_data_progress_bars(True)
assert ray.data.DataContext.get_current().enable_progress_bars
"""


def test_extraction_does_not_import_ray_data_and_its_progress_bars_follow_the_setting_either_way():
    env = {key: value for key, value in os.environ.items() if key != "RAY_DATA_DISABLE_PROGRESS_BARS"}
    done = subprocess.run([sys.executable, "-c", PROGRESS_BARS_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_local_test_instance_is_one_alive_node(ray_instance):
    from pipeline.ray_runtime import alive_node_count

    assert alive_node_count() == 1


def test_the_cluster_address_is_the_config_s_else_ray_address_else_none(monkeypatch):
    from pipeline.ray_runtime import RayConfig, cluster_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(RayConfig()) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_address(RayConfig()) == "10.0.0.1:6379"
    assert cluster_address(RayConfig(address="10.0.0.2:6379")) == "10.0.0.2:6379"
