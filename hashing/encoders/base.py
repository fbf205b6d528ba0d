"""The contract between decoding and encoding: what frames an encoder needs and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

# How decoding makes a frame S×S: "crop" scales the short side to S and cuts the centre square (open_clip's
# "shortest" mode); "fit" scales the long side to S and pads the rest with black (letterbox), so nothing
# near the edges of a wide frame is lost.
Resize = Literal["crop", "fit"]
RESIZE_MODES: tuple[str, ...] = get_args(Resize)


@dataclass(frozen=True)
class FrameSpec:
    """What the decode stage must produce for an encoder.

    Frames are uint8 RGB arrays of shape [S, S, 3] with S = ``size``. ``resize="crop"``: scale so the
    short side is S, then centre-crop (open_clip's "shortest" resize mode); ``"fit"``: scale so the
    long side is S and pad with black (the whole frame stays visible). The encoder itself converts to
    float and normalises with ``mean``/``std`` (per channel, on the 0..1 scale), so decoded clips stay
    4x smaller.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Resize = "crop"


@runtime_checkable
class MediaEncoder(Protocol):
    """Frame / clip / text encoder into one shared, L2-normalised embedding space."""

    @property
    def encoder_id(self) -> str:
        """Stable identity of everything that changes the embeddings (arch, weights, seed)."""
        ...

    @property
    def embed_dim(self) -> int: ...

    @property
    def frame_spec(self) -> FrameSpec: ...

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """uint8 [N, K, S, S, 3] -> float32 [N, D]: mean of per-frame embeddings, L2-normalised."""
        ...

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] -> float32 [N, D], L2-normalised."""
        ...

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """N strings -> float32 [N, D], L2-normalised."""
        ...

    def query_warnings(self, text: str) -> list[str]:
        """What a user should know about how this encoder reads a text query (empty when nothing)."""
        ...


def check_frames(frames: np.ndarray, spec: FrameSpec) -> None:
    """Raise ValueError unless ``frames`` is uint8 [N, S, S, 3] for ``spec``."""
    _check_uint8_images(frames, spec, leading_dims=1, layout="[N, S, S, 3]")


def check_clips(clips: np.ndarray, spec: FrameSpec) -> None:
    """Raise ValueError unless ``clips`` is uint8 [N, K, S, S, 3] (K >= 1) for ``spec``."""
    _check_uint8_images(clips, spec, leading_dims=2, layout="[N, K, S, S, 3]")
    if clips.shape[1] < 1:
        raise ValueError(f"clips need at least one frame each, got shape {clips.shape}")


def _check_uint8_images(array: np.ndarray, spec: FrameSpec, leading_dims: int, layout: str) -> None:
    expected_tail = (spec.size, spec.size, 3)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a numpy array {layout}, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 RGB frames {layout} (S={spec.size}), got dtype {array.dtype}; "
            "the encoder normalises frames itself, so pass the decoded uint8 pixels"
        )
    if array.ndim != leading_dims + 3 or tuple(array.shape[leading_dims:]) != expected_tail:
        raise ValueError(
            f"expected shape {layout} with S={spec.size}, got {array.shape}; "
            f"decode frames to {spec.size}x{spec.size} RGB as the encoder's FrameSpec says"
        )
