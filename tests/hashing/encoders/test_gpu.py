"""The encoder's CUDA path: device selection, fp16 autocast, batch size from free GPU memory, several GPUs.

The tests marked ``needs_cuda`` run only where torch sees a CUDA GPU (``benchmarks/gpu_check.sh`` runs them there);
the others isolate ``torch.cuda`` and run everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hashing.encoders.open_clip_encoder as open_clip_encoder
from hashing.encoders import OpenClipEncoderConfig, build_encoder
from hashing.encoders.device import batch_size_for_device, gpu_count, select_device
from hashing.encoders.open_clip_encoder import _autocast_dtype

TINY = "reelhash-tiny"
MIB = 1024 * 1024

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch.cuda.is_available() is False: no CUDA GPU on this machine")
needs_two_gpus = pytest.mark.skipif(gpu_count() < 2, reason="needs at least 2 CUDA GPUs visible to torch")


def tiny_config(**overrides) -> OpenClipEncoderConfig:
    return OpenClipEncoderConfig(**{"arch": TINY, "allow_random_weights": True, **overrides})


def random_clips(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, k, 64, 64, 3), dtype=np.uint8)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- everywhere: torch.cuda isolated -------------------------------------------------------------


def fake_free_memory(monkeypatch, free_bytes: int) -> list:
    """Make torch.cuda.mem_get_info report ``free_bytes``; returns the devices it was asked about."""
    asked = []

    def mem_get_info(device=None):
        asked.append(device)
        return free_bytes, 2 * free_bytes

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    return asked


def test_off_cuda_the_batch_size_is_the_default_and_no_gpu_is_asked(monkeypatch):
    asked = fake_free_memory(monkeypatch, 8 * 1024 * MIB)
    assert batch_size_for_device(torch.device("cpu"), per_item_bytes=MIB, default=64) == 64
    assert batch_size_for_device("mps", per_item_bytes=MIB, default=7) == 7
    assert asked == []


def test_on_cuda_the_batch_is_what_the_free_memory_holds(monkeypatch):
    asked = fake_free_memory(monkeypatch, 1024 * MIB)
    # Half of 1 GiB free by default, at 4 MiB per image.
    assert batch_size_for_device(torch.device("cuda"), per_item_bytes=4 * MIB, default=64) == 128
    assert batch_size_for_device("cuda:1", per_item_bytes=4 * MIB, default=64, memory_fraction=1.0) == 256
    assert asked == [torch.device("cuda"), torch.device("cuda:1")]  # the memory of the device asked about


def test_the_cuda_batch_is_bounded(monkeypatch):
    fake_free_memory(monkeypatch, 80 * 1024 * MIB)
    assert batch_size_for_device("cuda", per_item_bytes=1024, default=64) == 1024  # the default maximum
    assert batch_size_for_device("cuda", per_item_bytes=1024, default=64, maximum=300) == 300
    fake_free_memory(monkeypatch, 100 * MIB)
    assert batch_size_for_device("cuda", per_item_bytes=1024 * MIB, default=64) == 1  # never zero
    fake_free_memory(monkeypatch, 0)
    assert batch_size_for_device("cuda", per_item_bytes=MIB, default=64) == 1


@pytest.mark.parametrize("arguments", [
    {"per_item_bytes": 0, "default": 64}, {"per_item_bytes": MIB, "default": 0},
    {"per_item_bytes": MIB, "default": 64, "maximum": 0}, {"per_item_bytes": MIB, "default": 64, "memory_fraction": 0.0},
    {"per_item_bytes": MIB, "default": 64, "memory_fraction": 1.5},
])
def test_nonsense_arguments_are_rejected(arguments):
    with pytest.raises(ValueError):
        batch_size_for_device("cpu", **arguments)


def test_a_cpu_encoder_keeps_its_configured_batch_size_without_probing_memory(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a CPU encoder must not size its batch from GPU memory")

    monkeypatch.setattr(open_clip_encoder, "batch_size_for_device", refuse)
    assert build_encoder(tiny_config(device="cpu")).batch_size == OpenClipEncoderConfig().batch_size == 64
    assert build_encoder(tiny_config(device="cpu", batch_size=8)).batch_size == 8


def test_precision_auto_autocasts_to_fp16_on_cuda_and_not_at_all_on_cpu():
    assert _autocast_dtype("auto", torch.device("cuda")) == torch.float16
    assert _autocast_dtype("auto", torch.device("cuda:1")) == torch.float16
    # No autocast on a CPU: bf16 there is a bf16 image tower (tests/hashing/encoders/test_cpu_inference.py).
    assert _autocast_dtype("auto", torch.device("cpu")) is None
    assert _autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert _autocast_dtype("fp32", torch.device("cuda")) is None


# --- on a CUDA GPU ---------------------------------------------------------------------------------


@needs_cuda
def test_auto_selects_the_gpu():
    assert select_device("auto").type == "cuda"
    assert gpu_count() == torch.cuda.device_count() >= 1
    assert build_encoder(tiny_config()).device.type == "cuda"


@needs_cuda
def test_fp16_autocast_embeddings_match_fp32():
    fast = build_encoder(tiny_config(device="cuda"))  # precision "auto": fp16 autocast on CUDA
    exact = build_encoder(tiny_config(device="cuda", precision="fp32"))
    on_cpu = build_encoder(tiny_config(device="cpu"))
    assert fast.encoder_id == exact.encoder_id == on_cpu.encoder_id  # device and precision leave the identity alone
    clips = random_clips(6, 4, seed=1)
    assert np.all(cosines(fast.encode_clips(clips), exact.encode_clips(clips)) >= 0.999)
    assert np.all(cosines(fast.encode_clips(clips), on_cpu.encode_clips(clips)) >= 0.999)
    texts = ["a red car", "two dogs play in the snow", "a man is cooking"]
    assert np.all(cosines(fast.encode_text(texts), exact.encode_text(texts)) >= 0.999)


@needs_cuda
def test_the_gpu_batch_size_comes_from_free_memory_and_is_bounded():
    chosen = build_encoder(tiny_config(device="cuda"))
    assert 1 <= chosen.batch_size <= 1024
    assert 1 <= batch_size_for_device(torch.device("cuda"), per_item_bytes=MIB, default=64) <= 1024
    free_bytes, _ = torch.cuda.mem_get_info()
    assert batch_size_for_device("cuda", per_item_bytes=free_bytes * 4, default=64) == 1
    explicit = build_encoder(tiny_config(device="cuda", batch_size=8))
    assert explicit.batch_size == 8  # a batch size the user chose is kept
    clips = random_clips(12, 3, seed=2)
    assert np.all(cosines(chosen.encode_clips(clips), explicit.encode_clips(clips)) >= 0.999)


@needs_cuda
@needs_two_gpus
def test_each_gpu_can_carry_an_encoder():
    first = build_encoder(tiny_config(device="cuda:0"))
    second = build_encoder(tiny_config(device="cuda:1"))
    assert second.device == torch.device("cuda:1") and 1 <= second.batch_size <= 1024
    clips = random_clips(4, 2, seed=3)
    assert np.all(cosines(first.encode_clips(clips), second.encode_clips(clips)) >= 0.999)
