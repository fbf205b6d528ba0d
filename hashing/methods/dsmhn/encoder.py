"""A trained DSMHN model as a ``MediaEncoder``: the pipeline decodes, encodes and hashes with it like CLIP.

Its "embeddings" are the streams' relaxed codes (tanh outputs, ``embed_dim`` = n_bits, not
L2-normalised); the ``sign`` hasher turns them into bits. Video clips go through the video stream,
single frames (images) through the image stream, captions through the text stream.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from hashing.encoders.base import FrameSpec, check_clips, check_frames
from hashing.files import as_path, file_sha256, is_uri
from hashing.encoders.registry import register_encoder_kind
from hashing.methods.dsmhn.model import WEIGHTS_FILE, DsmhnModel
from hashing.methods.dsmhn.vocab import known_terms


class DsmhnEncoderConfig(pydantic.BaseModel):
    """Where the trained DSMHN model lives and where to run it."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    kind: Literal["dsmhn"] = "dsmhn"
    model_dir: str = pydantic.Field(description="directory holding dsmhn.json + dsmhn.safetensors (made absolute)")
    device: str = "auto"

    @pydantic.field_validator("model_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model_dir must name the directory of a trained DSMHN model")
        # Stored configs rebuild the encoder later, maybe from another working directory.
        return value if is_uri(value) else str(Path(value).expanduser().resolve())


class DsmhnEncoder:
    """MediaEncoder over a saved DSMHN model; ``ModelLoadError`` if the directory holds no valid model."""

    def __init__(self, config: DsmhnEncoderConfig) -> None:
        self._config = config
        self._model = DsmhnModel.load(config.model_dir, device=config.device)
        model_config = self._model.config
        self._weights_sha256 = file_sha256(as_path(config.model_dir) / WEIGHTS_FILE)
        self._frame_spec = FrameSpec(
            size=model_config.frame_size, mean=tuple(model_config.image_mean), std=tuple(model_config.image_std),
            resize=model_config.resize,
        )

    @property
    def config(self) -> DsmhnEncoderConfig:
        return self._config

    @property
    def model(self) -> DsmhnModel:
        return self._model

    @property
    def encoder_id(self) -> str:
        # The weights file's content identifies the model (the config is fixed by the weights' shapes
        # except for labels/vocabulary, which only a retrain changes, and a retrain changes the weights).
        # A frozen CLIP text encoder is not in that file: its config joins the identity.
        clip = self._model.config.clip_text_encoder
        if clip is None:
            return f"dsmhn-{self._weights_sha256[:16]}"
        combined = hashlib.sha256(f"{self._weights_sha256}\n{json.dumps(clip, sort_keys=True)}".encode()).hexdigest()
        return f"dsmhn-{combined[:16]}"

    @property
    def embed_dim(self) -> int:
        return self._model.config.n_bits

    @property
    def frame_spec(self) -> FrameSpec:
        return self._frame_spec

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """uint8 ``[N, K, S, S, 3]`` -> float32 ``[N, n_bits]`` relaxed codes (any K: frames are resampled)."""
        check_clips(clips, self._frame_spec)
        return self._model.encode_video(clips)

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` -> float32 ``[N, n_bits]`` relaxed codes from the image stream."""
        check_frames(frames, self._frame_spec)
        return self._model.encode_images(frames)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """N captions -> float32 ``[N, n_bits]`` relaxed codes from the text stream."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("encode_text expects a list of strings")
        return self._model.encode_text(list(texts))

    def query_warnings(self, text: str) -> list[str]:
        """A query with no word of the vocabulary becomes the all-zero bag of words: its code, and so the ranking,
        says nothing about the query (frozen CLIP text features, when the model has them, still do)."""
        config = self._model.config
        if config.text_input != "words" or known_terms(text, config.vocabulary):
            return []
        return [f"no word of the query {text!r} is in this DSMHN model's vocabulary ({len(config.vocabulary)} terms "
                "from its training captions), so its code carries no information and the results are arbitrary; "
                "use words of the training captions"]

    def describe(self) -> dict[str, Any]:
        config = self._model.config
        return {
            "encoder": "dsmhn",
            "encoder_id": self.encoder_id,
            "model_dir": self._config.model_dir,
            "weights_sha256": self._weights_sha256,
            "embed_dim": config.n_bits,
            "video_stream": config.video_stream,
            "video_arch": config.video_arch,
            "frame_size": config.frame_size,
            "resize": config.resize,
            "frames_per_clip": config.frames_per_clip,
            "image_mean": list(config.image_mean),
            "image_std": list(config.image_std),
            "n_labels": len(config.labels),
            "vocabulary_size": len(config.vocabulary),
            "text_input": config.text_input,
            "clip_text_encoder": config.clip_text_encoder,
        }


register_encoder_kind("dsmhn", DsmhnEncoderConfig, DsmhnEncoder)
