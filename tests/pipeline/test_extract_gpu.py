"""Encoder actors on GPUs: each actor gets its own GPU (num_gpus=1) and encodes on it as ``cuda``.

The tests that need Ray to see a GPU skip elsewhere (``benchmarks/gpu_check.sh`` runs them on a GPU machine); the
device rewriting inside an actor is checked everywhere.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import ray
import ray.cloudpickle
import torch

from hashing.encoders import OpenClipEncoderConfig, build_encoder
from media_files import write_tiny_mp4
from pipeline.encoder_pool import ClipEncoderActor, actor_encoder_config
from pipeline.extract import ExtractConfig, encoder_pool_size, extract_clip_features
from pipeline.ray_runtime import cluster_gpu_count
from pipeline.sampling import SamplingConfig

TINY = OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch.cuda.is_available() is False: no CUDA GPU on this machine")


# --- everywhere ------------------------------------------------------------------------------------


def test_an_actor_with_a_gpu_uses_it_as_cuda_whatever_its_number_on_the_node():
    config = {**TINY.model_dump(), "device": "cuda:1"}
    assert actor_encoder_config(config, assigned_gpus=[1])["device"] == "cuda"
    assert actor_encoder_config(config, assigned_gpus=["3"])["device"] == "cuda"
    for device in ("auto", "cuda", "cpu"):  # already right, or the user's explicit choice
        assert actor_encoder_config({**config, "device": device}, assigned_gpus=[1])["device"] == device
    assert actor_encoder_config(config, assigned_gpus=[]) == config  # no GPU: cuda:1 fails loudly later
    assert config["device"] == "cuda:1"  # the driver's config is left alone


# --- Ray with GPUs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_gpus(ray_instance) -> int:
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda.is_available() is False: no CUDA GPU on this machine")
    gpus = cluster_gpu_count()
    if gpus == 0:
        pytest.skip("torch sees a CUDA GPU but the Ray instance has no GPU resource")
    # The probe actor below is defined here, not in an installed module: Ray workers get it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return gpus


class EncoderProbe:
    """A ClipEncoderActor inside a Ray actor, reporting what it sees."""

    def __init__(self, encoder_config: dict):
        self.actor = ClipEncoderActor(encoder_config)

    def report(self) -> dict:
        return {"gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()], "device": str(self.actor.encoder.device),
                "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "torch_gpus": torch.cuda.device_count(),
                "batch_size": self.actor.encoder.batch_size}

    def encode(self, clips: np.ndarray) -> np.ndarray:
        batch = {"video_id": np.array(["v"] * len(clips)), "clip_idx": np.arange(len(clips)),
                 "error": np.array([""] * len(clips)), "frames": clips}
        return self.actor(batch)["embedding"]


def start_probes(count: int, device: str) -> list:
    probe = ray.remote(num_gpus=1, num_cpus=0.5)(EncoderProbe)
    return [probe.remote({**TINY.model_dump(), "device": device}) for _ in range(count)]


@needs_cuda
def test_an_encoder_actor_gets_a_gpu_and_encodes_on_it(ray_gpus):
    clips = np.random.default_rng(0).integers(0, 256, (3, 2, 64, 64, 3), dtype=np.uint8)
    (actor,) = start_probes(1, device="cuda:0")
    try:
        report = ray.get(actor.report.remote(), timeout=300)
        embeddings = ray.get(actor.encode.remote(clips), timeout=300).astype(np.float32)
    finally:
        ray.kill(actor)
    assert len(report["gpu_ids"]) == 1 and report["visible"] == report["gpu_ids"][0]
    assert report["device"] == "cuda" and report["torch_gpus"] == 1  # Ray shows the actor its GPU only
    assert 1 <= report["batch_size"] <= 1024
    expected = build_encoder(TINY.model_copy(update={"device": "cpu"})).encode_clips(clips)
    cosine = np.sum(embeddings * expected, axis=1) / np.linalg.norm(embeddings, axis=1)
    assert np.all(cosine >= 0.999)


@needs_cuda
def test_several_gpus_give_several_actors_each_on_its_own_gpu(ray_gpus):
    if ray_gpus < 2:
        pytest.skip(f"needs at least 2 GPUs in the Ray instance, it has {ray_gpus}")
    # one encoder actor per GPU, as far as the instance's CPUs go at one each
    assert encoder_pool_size(ExtractConfig()) == min(ray_gpus, int(ray.cluster_resources()["CPU"]))
    actors = start_probes(ray_gpus, device="cuda:1")  # a single-process device name must not matter in actors
    try:
        reports = ray.get([actor.report.remote() for actor in actors], timeout=300)
    finally:
        for actor in actors:
            ray.kill(actor)
    assert all(len(r["gpu_ids"]) == 1 and r["device"] == "cuda" and r["torch_gpus"] == 1 for r in reports)
    assert len({r["gpu_ids"][0] for r in reports}) == ray_gpus  # no two actors share a GPU


@needs_cuda
def test_extraction_encodes_on_the_gpu(ray_gpus, tmp_path):
    rows = [{"video_id": f"v{i}", "fingerprint": f"f{i}", "path": str(write_tiny_mp4(tmp_path / f"v{i}.mp4", seed=i))}
            for i in range(3)]
    result = extract_clip_features(
        rows, feature_dir=tmp_path / "features", encoder_config=TINY, frame_size=64, embed_dim=64,
        sampling=SamplingConfig(frames_per_clip=2), extract=ExtractConfig(unit_videos=2))
    assert result.failures == [] and result.videos_encoded == 3 and result.clips >= 3
