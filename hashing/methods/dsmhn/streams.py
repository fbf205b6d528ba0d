"""Modality-specific hash functions: each stream maps its input to K relaxed bits (tanh) via a hash layer.

Inputs are float tensors already normalised: clips ``[B, 3, T, S, S]`` (channels first, time
second, as torch's 3-D convolutions and torchvision video models expect), frames ``[B, 3, S, S]``,
bag-of-words or feature vectors ``[B, D]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from hashing.methods.dsmhn.config import FastInput, Pooling, VideoArch

# A training-time map of frames [N, 3, S, S] to frames of the same shape (augmentation).
FrameTransform = Callable[[torch.Tensor], torch.Tensor]


class HashLayer(nn.Module):
    """Dropout -> Linear [-> BatchNorm] -> tanh: K relaxed bits in (-1, 1); sign() of them is the binary code."""

    def __init__(self, in_features: int, n_bits: int, dropout: float = 0.0, norm: bool = False) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_bits)
        self.norm: nn.Module = nn.BatchNorm1d(n_bits) if norm else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.linear(self.dropout(features))))


def _global_pool(dims: Literal[2, 3], pooling: Pooling) -> nn.Module:
    # Max pooling reports whether a feature occurs anywhere (an object of a colour, a motion), whatever
    # the object's size; average pooling dilutes small objects in the background.
    if pooling == "max":
        return nn.AdaptiveMaxPool2d(1) if dims == 2 else nn.AdaptiveMaxPool3d(1)
    if pooling == "avg":
        return nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
    raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")


def _conv_bn_relu(dims: Literal[2, 3], c_in: int, c_out: int) -> list[nn.Module]:
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return [conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True)]


class VggBackbone(nn.Module):
    """``blocks`` VGG blocks (two 3x3 convs, BatchNorm, ReLU; widths w, 2w, 4w, ...) with a 2x spatial
    max pool between blocks, then global pooling -> ``w * 2**(blocks-1)`` features.

    ``dims=2`` works on frames ``[B, 3, S, S]``; ``dims=3`` on clips ``[B, 3, T, S, S]`` with 3x3x3
    kernels and time kept at full rate (pooling is spatial only), so direction-selective filters can
    form at every depth.

    Two convolutions per scale matter: with one strided conv per scale (our first design) held-out
    shape accuracy on the sample collection stayed near chance (0.23 for 6 shapes) where this reached
    0.66 (docs/dsmhn.md).
    """

    def __init__(self, dims: Literal[2, 3], width: int, blocks: int = 3, pooling: Pooling = "max") -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {blocks}")
        layers: list[nn.Module] = []
        c_in = 3
        for block in range(blocks):
            c_out = width * 2**block
            layers += _conv_bn_relu(dims, c_in, c_out) + _conv_bn_relu(dims, c_out, c_out)
            if block < blocks - 1:
                layers.append(nn.MaxPool2d(2) if dims == 2 else nn.MaxPool3d((1, 2, 2)))
            c_in = c_out
        layers += [_global_pool(dims, pooling), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.out_features = c_in

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels)


class SlowFastBackbone(nn.Module):
    """A small SlowFast network (Feichtenhofer et al., ICCV 2019) without lateral connections.

    - *Slow* pathway: a wide 2-D ``VggBackbone`` on ``slow_frames`` frames spread over the clip, max
      over them: appearance (shape, colour) at a low frame rate.
    - *Fast* pathway: a thin 3-D ``VggBackbone`` on every frame: motion at the full frame rate, with
      few channels because motion needs little appearance detail.

    Their pooled features are concatenated. The split spends the compute where each kind of label
    needs it: a full-width 3-D CNN costs ``3 x frames`` times a 2-D one per clip.
    """

    def __init__(self, slow_width: int, fast_width: int, slow_frames: int = 2, pooling: Pooling = "max",
                 fast_input: FastInput = "rgb", fast_scale: int = 1) -> None:
        super().__init__()
        if slow_frames < 1:
            raise ValueError(f"slow_frames must be at least 1, got {slow_frames}")
        if fast_input not in ("rgb", "diff"):
            raise ValueError(f"fast_input must be 'rgb' or 'diff', got {fast_input!r}")
        if fast_scale < 1:
            raise ValueError(f"fast_scale must be at least 1, got {fast_scale}")
        self.slow_frames = slow_frames
        self.fast_scale = fast_scale
        self.fast_input = fast_input
        self.slow = VggBackbone(2, slow_width, pooling=pooling)
        self.fast = VggBackbone(3, fast_width, pooling=pooling)
        self.out_features = self.slow.out_features + self.fast.out_features

    def forward(self, clips: torch.Tensor, slow_transform: FrameTransform | None = None) -> torch.Tensor:
        """``slow_transform`` (training only) changes the slow pathway's frames, not the fast pathway's clip."""
        batch, channels, time = clips.shape[:3]
        index = slow_frame_indices(time, self.slow_frames)
        frames = clips[:, :, index].transpose(1, 2).reshape(batch * len(index), channels, *clips.shape[3:])
        if slow_transform is not None:
            frames = slow_transform(frames)
        slow = self.slow(frames).view(batch, len(index), -1).amax(dim=1)
        fast_clips = clips
        if self.fast_scale > 1:
            scale = (1, self.fast_scale, self.fast_scale)
            fast_clips = nn.functional.avg_pool3d(clips, scale, scale, ceil_mode=True)
        # x4: differences of normalised frames are small; this puts them on the scale of the pixels.
        fast = self.fast(fast_clips if self.fast_input == "rgb" else 4.0 * frame_differences(fast_clips))
        return torch.cat([slow, fast], dim=1)


def frame_differences(clips: torch.Tensor) -> torch.Tensor:
    """``x[t] - x[t-1]`` along time of ``[B, C, T, H, W]`` (zero for the first frame)."""
    return torch.cat([torch.zeros_like(clips[:, :, :1]), clips[:, :, 1:] - clips[:, :, :-1]], dim=2)


def slow_frame_indices(n_frames: int, n_slow: int) -> list[int]:
    """``n_slow`` frame indices at the centres of equal parts of the clip (``[2, 6]`` for 8 and 2)."""
    n_slow = min(n_slow, n_frames)
    return [int((2 * part + 1) * n_frames // (2 * n_slow)) for part in range(n_slow)]


def _torchvision_video_backbone(arch: Literal["r3d18", "r2plus1d18"]) -> nn.Module:
    # Imported here: torchvision is only needed for these GPU-sized architectures.
    from torchvision.models.video import r2plus1d_18, r3d_18

    model = (r3d_18 if arch == "r3d18" else r2plus1d_18)(weights=None)
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    return model


class Video3DStream(nn.Module):
    """Video hash function: a 3-D CNN over the clip (spatial and temporal), then the hash layer."""

    def __init__(self, n_bits: int, width: int = 16, arch: VideoArch = "slowfast", dropout: float = 0.0,
                 pooling: Pooling = "max", fast_width: int = 8, fast_input: FastInput = "rgb",
                 fast_scale: int = 1, hash_norm: bool = False) -> None:
        super().__init__()
        if arch == "slowfast":
            self.backbone: nn.Module = SlowFastBackbone(width, fast_width, pooling=pooling, fast_input=fast_input,
                                                        fast_scale=fast_scale)
        elif arch == "vgg3d":
            self.backbone = VggBackbone(3, width, pooling=pooling)
        elif arch in ("r3d18", "r2plus1d18"):
            self.backbone = _torchvision_video_backbone(arch)
        else:
            raise ValueError(f"unknown video arch {arch!r}; use 'slowfast', 'vgg3d', 'r3d18' or 'r2plus1d18'")
        self.hash = HashLayer(self.backbone.out_features, n_bits, dropout, hash_norm)

    def forward(self, clips: torch.Tensor, slow_transform: FrameTransform | None = None) -> torch.Tensor:
        """``[B, 3, T, S, S]`` -> ``[B, K]``. ``slow_transform``: see ``SlowFastBackbone`` (other arches
        have no appearance-only pathway and ignore it)."""
        if clips.ndim != 5:
            raise ValueError(f"Video3DStream expects clips [B, 3, T, S, S], got shape {tuple(clips.shape)}")
        if isinstance(self.backbone, SlowFastBackbone):
            return self.hash(self.backbone(clips, slow_transform))
        return self.hash(self.backbone(clips))


class Frame2DStream(nn.Module):
    """Image hash function (2-D CNN); on clips it embeds every frame and mean-pools over time.

    Mean pooling makes it blind to frame order: a clip and the same clip reversed get the same code.
    As the video stream it is the ablation that shows what the 3-D stream's temporal modelling adds.
    """

    def __init__(self, n_bits: int, width: int = 16, dropout: float = 0.0, pooling: Pooling = "max",
                 hash_norm: bool = False) -> None:
        super().__init__()
        self.backbone = VggBackbone(2, width, pooling=pooling)
        self.hash = HashLayer(self.backbone.out_features, n_bits, dropout, hash_norm)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, 3, S, S]`` or clips ``[B, 3, T, S, S]`` -> ``[B, K]``."""
        if pixels.ndim == 4:
            return self.hash(self.backbone(pixels))
        if pixels.ndim != 5:
            raise ValueError(f"Frame2DStream expects [B, 3, S, S] or [B, 3, T, S, S], got {tuple(pixels.shape)}")
        batch, channels, time = pixels.shape[:3]
        frames = pixels.transpose(1, 2).reshape(batch * time, channels, *pixels.shape[3:])
        pooled = self.backbone(frames).view(batch, time, -1).mean(dim=1)
        return self.hash(pooled)


class MlpStream(nn.Module):
    """Vector hash function: Linear -> ReLU -> hash layer, or only the hash layer (a linear hash
    function) when ``hidden`` is 0. The text stream (on bag-of-words) and the feature-level streams
    of the Wiki benchmark."""

    def __init__(self, in_features: int, hidden: int, n_bits: int, dropout: float = 0.0,
                 hash_norm: bool = False) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0 (0 = linear), got {hidden}")
        if hidden:
            self.hidden: nn.Module = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True))
        else:
            self.hidden = nn.Identity()
        self.hash = HashLayer(hidden or in_features, n_bits, dropout, hash_norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` -> ``[B, K]``."""
        return self.hash(self.hidden(features))


class TextStream(MlpStream):
    """Text hash function: an MLP on the caption's bag-of-words vector ``[B, V]``."""

    def __init__(self, vocabulary_size: int, hidden: int, n_bits: int, dropout: float = 0.0,
                 hash_norm: bool = False) -> None:
        super().__init__(vocabulary_size, hidden, n_bits, dropout, hash_norm)
