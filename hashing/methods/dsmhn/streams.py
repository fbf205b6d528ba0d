"""Modality-specific hash functions: each stream maps its input to K relaxed bits (tanh) via a hash layer.

Inputs are float tensors already normalised: clips ``[B, 3, T, S, S]`` (channels first, time
second, as torch's 3-D convolutions and torchvision video models expect), frames ``[B, 3, S, S]``,
bag-of-words or feature vectors ``[B, D]``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class HashLayer(nn.Module):
    """Dropout -> Linear -> tanh: K relaxed bits in (-1, 1); sign() of them is the binary code."""

    def __init__(self, in_features: int, n_bits: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_bits)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(self.dropout(features)))


Pooling = Literal["avg", "max"]


def _global_pool(dims: Literal[2, 3], pooling: Pooling) -> nn.Module:
    # Max pooling reports whether a feature occurs anywhere (an object of a colour, a motion), whatever
    # the object's size; average pooling dilutes small objects in the background.
    if pooling == "max":
        return nn.AdaptiveMaxPool2d(1) if dims == 2 else nn.AdaptiveMaxPool3d(1)
    if pooling == "avg":
        return nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
    raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")


def _conv_block(dims: Literal[2, 3], c_in: int, c_out: int, kernel, stride, padding) -> nn.Sequential:
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(
        conv(c_in, c_out, kernel, stride=stride, padding=padding, bias=False), norm(c_out), nn.ReLU(inplace=True)
    )


class Small3dBackbone(nn.Module):
    """Four 3-D conv layers (width w, 2w, 4w, 8w) and global pooling -> ``8w`` features.

    Every layer has a temporal kernel of 3, so direction-selective (motion) filters can form; time
    is kept at full rate for two layers and halved in the last two (8 frames -> 2).
    """

    def __init__(self, width: int, pooling: Pooling = "max") -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_block(3, 3, w, (3, 5, 5), (1, 2, 2), (1, 2, 2)),
            _conv_block(3, w, 2 * w, 3, (1, 2, 2), 1),
            _conv_block(3, 2 * w, 4 * w, 3, (2, 2, 2), 1),
            _conv_block(3, 4 * w, 8 * w, 3, (2, 2, 2), 1),
            _global_pool(3, pooling),
            nn.Flatten(),
        )
        self.out_features = 8 * w

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.features(clips)


class TwoPathway3dBackbone(nn.Module):
    """An appearance pathway on the RGB clip and a motion pathway on its frame differences, both
    ``Small3dBackbone``; their pooled features are concatenated -> ``16w`` features.

    Frame differences are zero wherever nothing moves, so the motion pathway cannot memorise a
    training video by its static background (on a few dozen videos the RGB pathway does exactly
    that and learns no motion). The same idea as the RGB-difference stream of TSN, a cheap stand-in
    for optical flow in two-stream networks.
    """

    def __init__(self, width: int, pooling: Pooling = "max") -> None:
        super().__init__()
        self.appearance = Small3dBackbone(width, pooling)
        self.motion = Small3dBackbone(width, pooling)
        self.out_features = self.appearance.out_features + self.motion.out_features

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        # x4: differences of normalised frames are small; this puts them on the scale of the pixels.
        return torch.cat([self.appearance(clips), self.motion(4.0 * frame_differences(clips))], dim=1)


def frame_differences(clips: torch.Tensor) -> torch.Tensor:
    """``x[t] - x[t-1]`` along time of ``[B, C, T, H, W]`` (zero for the first frame)."""
    return torch.cat([torch.zeros_like(clips[:, :, :1]), clips[:, :, 1:] - clips[:, :, :-1]], dim=2)


class Small2dBackbone(nn.Module):
    """The 2-D twin of ``Small3dBackbone`` (same widths and strides, no time axis) -> ``8w`` features."""

    def __init__(self, width: int, pooling: Pooling = "max") -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_block(2, 3, w, 5, 2, 2),
            _conv_block(2, w, 2 * w, 3, 2, 1),
            _conv_block(2, 2 * w, 4 * w, 3, 2, 1),
            _conv_block(2, 4 * w, 8 * w, 3, 2, 1),
            _global_pool(2, pooling),
            nn.Flatten(),
        )
        self.out_features = 8 * w

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.features(frames)


def _torchvision_video_backbone(arch: Literal["r3d18", "r2plus1d18"]) -> nn.Module:
    # Imported here: torchvision is only needed for these GPU-sized architectures.
    from torchvision.models.video import r2plus1d_18, r3d_18

    model = (r3d_18 if arch == "r3d18" else r2plus1d_18)(weights=None)
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    return model


class Video3DStream(nn.Module):
    """Video hash function: a 3-D CNN over the clip (spatial and temporal), then the hash layer."""

    def __init__(self, n_bits: int, width: int = 32, arch: Literal["small3d", "r3d18", "r2plus1d18"] = "small3d",
                 dropout: float = 0.0, motion_pathway: bool = True, pooling: Pooling = "max") -> None:
        super().__init__()
        if arch == "small3d":
            self.backbone: nn.Module = (TwoPathway3dBackbone if motion_pathway else Small3dBackbone)(width, pooling)
        elif arch in ("r3d18", "r2plus1d18"):
            self.backbone = _torchvision_video_backbone(arch)
        else:
            raise ValueError(f"unknown video arch {arch!r}; use 'small3d', 'r3d18' or 'r2plus1d18'")
        self.hash = HashLayer(self.backbone.out_features, n_bits, dropout)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, S, S]`` -> ``[B, K]``."""
        if clips.ndim != 5:
            raise ValueError(f"Video3DStream expects clips [B, 3, T, S, S], got shape {tuple(clips.shape)}")
        return self.hash(self.backbone(clips))


class Frame2DStream(nn.Module):
    """Image hash function (2-D CNN); on clips it embeds every frame and mean-pools over time.

    Mean pooling makes it blind to frame order: a clip and the same clip reversed get the same code.
    As the video stream it is the ablation that shows what the 3-D stream's temporal modelling adds.
    """

    def __init__(self, n_bits: int, width: int = 32, dropout: float = 0.0, pooling: Pooling = "max") -> None:
        super().__init__()
        self.backbone = Small2dBackbone(width, pooling)
        self.hash = HashLayer(self.backbone.out_features, n_bits, dropout)

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

    def __init__(self, in_features: int, hidden: int, n_bits: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0 (0 = linear), got {hidden}")
        if hidden:
            self.hidden: nn.Module = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True))
        else:
            self.hidden = nn.Identity()
        self.hash = HashLayer(hidden or in_features, n_bits, dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` -> ``[B, K]``."""
        return self.hash(self.hidden(features))


class TextStream(MlpStream):
    """Text hash function: an MLP on the caption's bag-of-words vector ``[B, V]``."""

    def __init__(self, vocabulary_size: int, hidden: int, n_bits: int, dropout: float = 0.0) -> None:
        super().__init__(vocabulary_size, hidden, n_bits, dropout)
