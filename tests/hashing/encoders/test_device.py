import pytest
import torch

from hashing.encoders.device import gpu_count, select_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def test_cpu_is_always_available():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")


def test_gpu_count_matches_torch():
    expected = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert gpu_count() == expected


@no_cuda
def test_auto_falls_back_without_cuda():
    mps = torch.backends.mps.is_available()
    assert select_device("auto") == torch.device("mps" if mps else "cpu")


def test_auto_prefers_cuda_when_present(monkeypatch):
    # Only the availability query is faked; select_device must not touch the GPU itself.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda:1") == torch.device("cuda:1")
    assert gpu_count() == 2


@no_cuda
def test_explicit_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        select_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        select_device("cuda:1")


def test_cuda_index_beyond_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        select_device("cuda:1")


@pytest.mark.parametrize("preference", ["banana", "tpu", "xpu", ""])
def test_unknown_device_names_are_rejected(preference):
    with pytest.raises(ValueError, match="device"):
        select_device(preference)
