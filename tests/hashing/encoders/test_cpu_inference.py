"""How the encoder runs on a CPU: precision "auto" takes a bf16 image tower where the CPU has native bf16.

No timing here: the speed is measured by benchmarks/cpu_inference.py (docs/encoders.md, "CPU inference").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hashing.encoders.open_clip_encoder as open_clip_encoder
from hashing.encoders.open_clip_encoder import (
    _autocast_dtype,
    _cast_image_tower,
    _image_tower_dtype,
    build_encoder,
    cpu_has_native_bf16,
)
from hashing.encoders.weights import OpenClipEncoderConfig

TINY = "reelhash-tiny"
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def tiny_config(**overrides) -> OpenClipEncoderConfig:
    return OpenClipEncoderConfig(**{"arch": TINY, "allow_random_weights": True, "device": "cpu", **overrides})


def random_frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16, whatever this machine has."""
    def pretend(value: bool) -> None:
        monkeypatch.setattr(open_clip_encoder, "cpu_has_native_bf16", lambda: value)
    return pretend


# --- which precision runs where ------------------------------------------------------------------------------


def test_auto_is_a_bf16_image_tower_on_a_cpu_with_native_bf16_and_fp32_without():
    assert _image_tower_dtype("auto", CPU, native_bf16=True) == torch.bfloat16
    assert _image_tower_dtype("auto", CPU, native_bf16=False) is None
    assert _autocast_dtype("auto", CPU) is None  # no autocast on a CPU: the tower itself is bf16, texts stay fp32


def test_explicit_precisions_on_a_cpu():
    for native in (True, False):
        assert _image_tower_dtype("fp32", CPU, native_bf16=native) is None  # fp32 stays available everywhere
        assert _image_tower_dtype("bf16", CPU, native_bf16=native) == torch.bfloat16  # asked for: always
        assert _image_tower_dtype("fp16", CPU, native_bf16=native) is None  # fp16 keeps its autocast
    assert _autocast_dtype("fp32", CPU) is None
    assert _autocast_dtype("fp16", CPU) == torch.float16


def test_gpus_keep_fp32_weights_and_fp16_autocast():
    for precision in ("auto", "fp32", "fp16", "bf16"):
        assert _image_tower_dtype(precision, CUDA, native_bf16=True) is None
        assert _image_tower_dtype(precision, torch.device("mps"), native_bf16=True) is None
    assert _autocast_dtype("auto", CUDA) == torch.float16


def test_auto_asks_the_cpu_only_when_it_matters(native_bf16, monkeypatch):
    native_bf16(True)
    assert _image_tower_dtype("auto", CPU) == torch.bfloat16
    native_bf16(False)
    assert _image_tower_dtype("auto", CPU) is None

    def refuse():
        raise AssertionError("only 'auto' on a CPU depends on the CPU")
    monkeypatch.setattr(open_clip_encoder, "cpu_has_native_bf16", refuse)
    assert _image_tower_dtype("auto", CUDA) is None
    assert _image_tower_dtype("fp32", CPU) is None


# --- detecting native bf16 -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_probe():
    """cpu_has_native_bf16 asks again, and this machine's answer is back for the next test."""
    cpu_has_native_bf16.cache_clear()
    yield
    cpu_has_native_bf16.cache_clear()


def test_native_bf16_comes_from_torchs_probes(monkeypatch, fresh_probe):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16() is False
    cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True
    cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True
    cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # bf16 matmuls go through oneDNN
    assert cpu_has_native_bf16() is False


def test_without_torchs_probes_the_cpu_flags_decide(monkeypatch, tmp_path, fresh_probe):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    real_open = open

    def cpuinfo_with(flags: str):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        return lambda name, *args, **kwargs: real_open(path if name == "/proc/cpuinfo" else name, *args, **kwargs)

    monkeypatch.setattr("builtins.open", cpuinfo_with("fpu sse avx2 avx512f avx512_bf16"))
    assert cpu_has_native_bf16() is True
    cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr("builtins.open", cpuinfo_with("fpu sse avx2 avx512f"))
    assert cpu_has_native_bf16() is False


def test_this_machine_gets_an_answer():
    assert isinstance(cpu_has_native_bf16(), bool)


# --- the bf16 image tower ------------------------------------------------------------------------------------


def test_a_bf16_tower_casts_the_image_weights_only():
    encoder = build_encoder(tiny_config(precision="bf16"))
    model = encoder._model
    assert model.visual.conv1.weight.dtype == torch.bfloat16
    assert model.visual.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.bfloat16
    assert model.visual.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert model.visual.ln_pre.weight.dtype == torch.float32  # LayerNorm parameters stay fp32, as in open_clip
    assert model.visual.positional_embedding.dtype == torch.float32
    assert model.token_embedding.weight.dtype == torch.float32  # the text tower is left alone
    assert model.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.float32


def test_auto_with_native_bf16_stays_within_float_noise_of_fp32(native_bf16):
    native_bf16(True)
    fast = build_encoder(tiny_config())  # precision "auto"
    exact = build_encoder(tiny_config(precision="fp32"))
    assert fast._model.visual.conv1.weight.dtype == torch.bfloat16
    assert fast.encoder_id == exact.encoder_id  # precision is not part of the identity
    frames = random_frames(6, seed=3)
    embeddings = fast.encode_frames(frames)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert np.all(cosines(embeddings, exact.encode_frames(frames)) >= 0.999)
    clips = random_frames(8, seed=4).reshape(2, 4, 64, 64, 3)
    assert np.all(cosines(fast.encode_clips(clips), exact.encode_clips(clips)) >= 0.999)
    texts = ["a red square slides left", "two dogs play"]
    np.testing.assert_allclose(fast.encode_text(texts), exact.encode_text(texts), atol=1e-6)  # texts stay fp32


def test_auto_without_native_bf16_is_fp32(native_bf16):
    native_bf16(False)
    auto = build_encoder(tiny_config())
    exact = build_encoder(tiny_config(precision="fp32"))
    assert auto._model.visual.conv1.weight.dtype == torch.float32
    frames = random_frames(4, seed=5)
    np.testing.assert_allclose(auto.encode_frames(frames), exact.encode_frames(frames), atol=1e-6)


def test_a_tower_that_is_not_open_clips_vit_is_left_in_fp32():
    class ConvTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))

    model = ConvTower()
    assert _cast_image_tower(model, torch.bfloat16) is False
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def test_vit_b_32_in_bf16_stays_within_the_bound_of_fp32():
    """The architecture the benchmark measures, random weights (docs/encoders.md says what that leaves open)."""
    config = {"arch": "ViT-B-32", "allow_random_weights": True, "device": "cpu"}
    exact = build_encoder(OpenClipEncoderConfig(**config, precision="fp32"))
    low = build_encoder(OpenClipEncoderConfig(**config, precision="bf16"))
    frames = random_frames(3, size=224, seed=7)
    assert np.all(cosines(low.encode_frames(frames), exact.encode_frames(frames)) >= 0.999)
