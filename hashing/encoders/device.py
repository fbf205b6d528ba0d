"""Choosing the torch device an encoder runs on."""

from __future__ import annotations

import torch


def gpu_count() -> int:
    """Number of CUDA devices torch can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(preference: str = "auto") -> torch.device:
    """Resolve a device preference: "auto" (cuda, else mps, else cpu), "cpu", "cuda", "cuda:N", "mps".

    Asking explicitly for an accelerator that is not there is a ValueError rather than a silent
    fall-back to the CPU, so a misconfigured GPU worker fails loudly.
    """
    choice = preference.strip().lower()
    if choice == "auto":
        if gpu_count() > 0:
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from error

    if device.type == "cpu":
        return device
    if device.type == "cuda":
        available = gpu_count()
        if available == 0:
            raise ValueError(
                f"device {preference!r} was requested but torch sees no CUDA GPU "
                "(torch.cuda.is_available() is False); use device 'cpu' or 'auto'"
            )
        if device.index is not None and device.index >= available:
            raise ValueError(
                f"device {preference!r} was requested but only {available} CUDA GPU(s) are visible "
                f"(valid: cuda:0..cuda:{available - 1})"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {preference!r} was requested but MPS is not available; use 'cpu' or 'auto'")
        return device
    raise ValueError(f"unsupported device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def batch_size_for_device(
    device: torch.device | str,
    per_item_bytes: int,
    default: int,
    *,
    maximum: int = 1024,
    memory_fraction: float = 0.5,
) -> int:
    """Items per forward pass on ``device``: ``default`` off CUDA; on CUDA what fits in the GPU's free memory.

    On CUDA: ``memory_fraction`` of the free memory (``torch.cuda.mem_get_info``) divided by ``per_item_bytes``,
    clamped to ``1..maximum``. Only half of the free memory by default because it is read once, when an encoder
    starts: another process on the same GPU, the allocator's fragmentation or a larger text batch can take more
    later, and an out-of-memory error in the middle of a run costs far more than a smaller batch. The maximum
    because a GPU is saturated long before that; bigger batches only add latency and host memory.
    CPUs and MPS keep ``default``: their batch size is a throughput/latency trade-off, not a memory limit.
    """
    if per_item_bytes <= 0 or default <= 0 or maximum <= 0:
        raise ValueError("per_item_bytes, default and maximum must be positive")
    if not 0.0 < memory_fraction <= 1.0:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    device = torch.device(device)
    if device.type != "cuda":
        return default
    free_bytes, _total_bytes = torch.cuda.mem_get_info(device)
    fits = int(free_bytes * memory_fraction) // per_item_bytes
    return max(1, min(maximum, fits))
