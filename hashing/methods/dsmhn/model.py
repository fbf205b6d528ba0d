"""The DSMHN network: video, image and text streams with a shared label classifier; save and load.

A model directory holds ``dsmhn.json`` (format version + ``DsmhnConfig``) and ``dsmhn.safetensors``
(the state dict). The weights are written first and the JSON last, each atomically, so a directory
with a ``dsmhn.json`` holds a complete model.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic
import safetensors.torch
import torch
from torch import nn

from hashing.encoders.device import select_device
from hashing.files import as_path, atomic_write_bytes, make_directory
from hashing.hashers.storage import ModelLoadError
from hashing.methods.dsmhn.config import DsmhnConfig
from hashing.methods.dsmhn.streams import Frame2DStream, MlpStream, TextStream, Video3DStream
from hashing.methods.dsmhn.text_input import CaptionFeatures

if TYPE_CHECKING:
    from hashing.encoders.open_clip_encoder import OpenClipEncoder

# 2: SlowFast / VGG streams and the resize mode (version 1 models had other networks: retrain them).
# 3: hash_norm and label_loss. A version 2 config predates them: it means no norm and sigmoid labels.
# 4: text_input (frozen CLIP text features); version 2 and 3 configs read bag-of-words only.
FORMAT_VERSION = 4
READABLE_VERSIONS = {2: {"hash_norm": False, "label_loss": "sigmoid"}, 3: {}, 4: {}}
CONFIG_FILE = "dsmhn.json"
WEIGHTS_FILE = "dsmhn.safetensors"
ENCODE_BATCH = 64  # clips / frames / captions per forward pass when encoding


class DsmhnModel(nn.Module):
    """``video`` (3-D or per-frame 2-D, per config), ``image`` (2-D), ``text`` (MLP), ``classifier``.

    The text stream reads ``config.text_input`` (``text_input.CaptionFeatures``); a frozen CLIP text
    encoder, when used, is built from the config on the first caption unless ``clip_text_encoder`` gives it.
    """

    def __init__(self, config: DsmhnConfig, clip_text_encoder: OpenClipEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        self.caption_features = CaptionFeatures(config.text_input, config.vocabulary, config.clip_text_encoder,
                                                config.clip_text_dim, clip_text_encoder)
        k = config.n_bits
        if config.video_stream == "3d":
            self.video: nn.Module = Video3DStream(k, config.width, config.video_arch, config.dropout, config.pooling,
                                                  config.fast_width, config.fast_input, config.fast_scale,
                                                  config.hash_norm)
        else:
            self.video = Frame2DStream(k, config.width, config.dropout, config.pooling, config.hash_norm)
        self.image = Frame2DStream(k, config.width, config.dropout, config.pooling, config.hash_norm)
        self.text = TextStream(self.caption_features.dim, config.text_hidden, k, config.dropout, config.hash_norm)
        # Shared by every stream: the codes of all modalities must predict labels the same way.
        self.classifier = nn.Linear(k, len(config.labels))
        shape = (1, 3, 1, 1, 1)
        self.register_buffer("pixel_mean", torch.tensor(config.image_mean).view(shape), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.image_std).view(shape), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    # --- input conversion -------------------------------------------------------------------

    def clips_to_tensor(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 ``[N, K, S, S, 3]`` -> normalised float ``[N, 3, T, S, S]`` on the model's device."""
        return self.normalize_pixels(self.clip_pixels(clips))

    def frames_to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``[N, S, S, 3]`` -> normalised float ``[N, 3, S, S]`` on the model's device."""
        frames = self._check_pixels(frames, leading_dims=1, layout="[N, S, S, 3]")
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return self.normalize_pixels(pixels.permute(0, 3, 1, 2).float().div_(255.0))

    def clip_pixels(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 ``[N, K, S, S, 3]`` -> float ``[N, 3, T, S, S]`` in 0..1 (not yet normalised).

        K != ``frames_per_clip`` is resampled to T = ``frames_per_clip`` frames (nearest, evenly spread),
        so a one-frame "clip" (an image) becomes a still clip.
        """
        clips = self._check_pixels(clips, leading_dims=2, layout="[N, K, S, S, 3]")
        if clips.shape[1] != self.config.frames_per_clip:
            clips = clips[:, resample_indices(clips.shape[1], self.config.frames_per_clip)]
        pixels = torch.from_numpy(np.ascontiguousarray(clips)).to(self.device)
        return pixels.permute(0, 4, 1, 2, 3).float().div_(255.0)

    def normalize_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-channel standardisation of 0..1 pixels ``[N, 3, T, S, S]`` or ``[N, 3, S, S]``."""
        mean, std = self.pixel_mean, self.pixel_std
        if pixels.ndim == 4:
            mean, std = mean[:, :, 0], std[:, :, 0]
        return (pixels - mean) / std

    def text_to_tensor(self, captions: list[str]) -> torch.Tensor:
        """Captions -> the text stream's input ``float [N, D]`` (word presences and/or scaled CLIP embeddings)."""
        return torch.from_numpy(self.caption_features(captions)).to(self.device)

    def _check_pixels(self, array: np.ndarray, leading_dims: int, layout: str) -> np.ndarray:
        size = self.config.frame_size
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 numpy array {layout}, got {getattr(array, 'dtype', type(array))}; "
                             "pass decoded RGB pixels, the model normalises them itself")
        if array.ndim != leading_dims + 3 or array.shape[leading_dims:] != (size, size, 3):
            raise ValueError(f"expected shape {layout} with S={size}, got {array.shape}: decode frames to "
                             f"{size}x{size} RGB (the model's frame_size)")
        if leading_dims == 2 and array.shape[1] < 1:
            raise ValueError(f"clips need at least one frame, got shape {array.shape}")
        return array

    # --- encoding -----------------------------------------------------------------------------

    def encode_video(self, clips: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
        """uint8 clips ``[N, K, S, S, 3]`` -> relaxed codes float32 ``[N, n_bits]`` (tanh outputs)."""
        self._check_pixels(clips, leading_dims=2, layout="[N, K, S, S, 3]")
        return self._encode(len(clips), batch_size, lambda rows: self.video(self.clips_to_tensor(clips[rows])))

    def encode_images(self, frames: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
        """uint8 frames ``[N, S, S, 3]`` -> relaxed codes float32 ``[N, n_bits]`` from the image stream."""
        self._check_pixels(frames, leading_dims=1, layout="[N, S, S, 3]")
        return self._encode(len(frames), batch_size, lambda rows: self.image(self.frames_to_tensor(frames[rows])))

    def encode_text(self, captions: list[str], batch_size: int = ENCODE_BATCH) -> np.ndarray:
        """Captions -> relaxed codes float32 ``[N, n_bits]`` from the text stream."""
        if isinstance(captions, str):
            raise ValueError("encode_text expects a list of strings, not one string")
        captions = list(captions)
        return self._encode(len(captions), batch_size, lambda rows: self.text(self.text_to_tensor(captions[rows])))

    def _encode(self, n_rows: int, batch_size: int, forward) -> np.ndarray:
        out = np.empty((n_rows, self.config.n_bits), dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, n_rows, batch_size):
                    rows = slice(start, start + batch_size)
                    out[rows] = forward(rows).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    # --- storage ------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``dsmhn.safetensors`` then ``dsmhn.json`` into ``directory`` (created if needed), atomically."""
        directory = as_path(directory)
        make_directory(directory)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        weights = safetensors.torch.save(state, metadata={"method": "dsmhn", "format_version": str(FORMAT_VERSION)})
        document = {"format_version": FORMAT_VERSION, "method": "dsmhn", "config": self.config.model_dump(mode="json")}
        atomic_write_bytes(directory / WEIGHTS_FILE, weights)
        atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(document, indent=2) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str = "cpu") -> DsmhnModel:
        """Load a model saved by :meth:`save`, in eval mode; ``ModelLoadError`` says what is wrong."""
        directory = as_path(directory)
        if not directory.is_dir():
            raise ModelLoadError(f"DSMHN model directory {directory} does not exist: check the path or train a model")
        config = read_config(directory)
        weights_path = directory / WEIGHTS_FILE
        if not weights_path.is_file():
            raise ModelLoadError(f"{weights_path} is missing: the model directory is incomplete; re-save the model")
        try:
            state = safetensors.torch.load(weights_path.read_bytes())
        except Exception as error:  # safetensors raises its own SafetensorError
            raise ModelLoadError(f"{weights_path} is not a readable safetensors file ({error}); re-save the model") from error
        model = cls(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ModelLoadError(
                f"{weights_path} does not match {directory / CONFIG_FILE} ({error}); the files come from "
                "different models or were edited: re-save the model"
            ) from error
        return model.to(select_device(device)).eval()


def read_config(directory: str | os.PathLike[str]) -> DsmhnConfig:
    """The ``DsmhnConfig`` stored in ``directory/dsmhn.json``; ``ModelLoadError`` if missing or invalid."""
    path = as_path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: the DSMHN model was never saved completely; re-run training")
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is not valid JSON ({error}); re-save the model") from error
    if not isinstance(document, dict) or document.get("method") != "dsmhn":
        raise ModelLoadError(f"{path} is not a DSMHN model config (no \"method\": \"dsmhn\")")
    version = document.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelLoadError(f"{path} has format_version={version!r}; this reelhash reads "
                             f"{sorted(READABLE_VERSIONS)}: re-train the model with this version")
    config = document.get("config")
    if isinstance(config, dict):
        config = {**READABLE_VERSIONS[version], **config}
    try:
        return DsmhnConfig.model_validate(config)
    except pydantic.ValidationError as error:
        raise ModelLoadError(f"{path} holds an invalid DSMHN config: {error}") from error


def resample_indices(n_frames: int, target: int) -> np.ndarray:
    """``target`` frame indices spread evenly over ``n_frames`` (segment centres, nearest frame)."""
    return np.minimum(((np.arange(target) + 0.5) * n_frames / target).astype(np.int64), n_frames - 1)


class DsmhnFeatureModel(nn.Module):
    """DSMHN on precomputed feature vectors (e.g. the Wiki benchmark): two MLP streams + shared classifier.

    Inputs are standardised with the training set's per-dimension mean and std (stored as buffers).
    """

    def __init__(self, image_dim: int, text_dim: int, n_labels: int, n_bits: int, hidden: int = 1024,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.n_bits = n_bits
        self.image = MlpStream(image_dim, hidden, n_bits, dropout)
        self.text = MlpStream(text_dim, hidden, n_bits, dropout)
        self.classifier = nn.Linear(n_bits, n_labels)
        for name, dim in (("image", image_dim), ("text", text_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def set_standardization(self, x_image: np.ndarray, x_text: np.ndarray) -> None:
        for name, x in (("image", x_image), ("text", x_text)):
            x = np.asarray(x, dtype=np.float64)
            std = x.std(axis=0)
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(x.mean(axis=0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0)))

    def image_input(self, x: np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(np.asarray(x, np.float32), device=self.device) - self.image_mean) / self.image_std

    def text_input(self, x: np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(np.asarray(x, np.float32), device=self.device) - self.text_mean) / self.text_std

    def encode_image_features(self, x: np.ndarray) -> np.ndarray:
        """Image features ``[N, Dx]`` -> relaxed codes float32 ``[N, n_bits]``."""
        return self._encode(lambda: self.image(self.image_input(x)))

    def encode_text_features(self, x: np.ndarray) -> np.ndarray:
        """Text features ``[N, Dt]`` -> relaxed codes float32 ``[N, n_bits]``."""
        return self._encode(lambda: self.text(self.text_input(x)))

    def _encode(self, forward) -> np.ndarray:
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return forward().float().cpu().numpy()
        finally:
            self.train(was_training)
