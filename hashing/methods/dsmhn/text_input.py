"""What DSMHN's text stream reads: bag-of-words terms, frozen CLIP text embeddings, or both side by side.

``text_input="words"`` (default): term presences over the vocabulary built from the training captions.
``"clip"``: the caption's embedding from a frozen open_clip text tower (``clip_text_encoder``, any open_clip
encoder config: an architecture plus a pretrained tag or a local checkpoint). ``"words+clip"``: both,
words first. The CLIP tower is never trained and never saved with the model: the model stores its config,
and rebuilds it on the first caption it encodes, so encoding videos never needs the CLIP weights.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hashing.methods.dsmhn.vocab import bag_of_words

if TYPE_CHECKING:
    from hashing.encoders.open_clip_encoder import OpenClipEncoder

TextInput = Literal["words", "clip", "words+clip"]


def uses_words(kind: TextInput) -> bool:
    return kind in ("words", "words+clip")


def uses_clip(kind: TextInput) -> bool:
    return kind in ("clip", "words+clip")


def validated_clip_encoder_config(config: dict[str, Any]) -> dict[str, Any]:
    """The open_clip encoder config as a JSON-able dict, checked by ``OpenClipEncoderConfig``."""
    from hashing.encoders.weights import OpenClipEncoderConfig

    return OpenClipEncoderConfig.model_validate(config).model_dump(mode="json")


def build_clip_text_encoder(config: dict[str, Any]) -> OpenClipEncoder:
    """The frozen CLIP of ``clip_text_encoder``; ``WeightsUnavailableError`` says how to provide missing weights."""
    from hashing.encoders import build_media_encoder

    return build_media_encoder(config)  # type: ignore[return-value]  (the config's kind is open_clip)


class CaptionFeatures:
    """Captions -> the text stream's input rows ``float32 [N, n_words + clip_dim]`` (words first)."""

    def __init__(self, kind: TextInput, vocabulary: list[str], clip_text_encoder: dict[str, Any] | None,
                 clip_text_dim: int | None, encoder: OpenClipEncoder | None = None) -> None:
        if uses_clip(kind) and (clip_text_encoder is None or clip_text_dim is None):
            raise ValueError(f"text_input={kind!r} needs clip_text_encoder and clip_text_dim (train_dsmhn fills "
                             "the dimension from the encoder)")
        self.vocabulary = vocabulary
        self.n_words = len(vocabulary) if uses_words(kind) else 0
        self.clip_dim = clip_text_dim if uses_clip(kind) else 0
        self._clip_config = clip_text_encoder
        self._encoder = encoder

    @property
    def dim(self) -> int:
        return self.n_words + self.clip_dim

    def __call__(self, captions: list[str]) -> np.ndarray:
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError("captions must be a list of strings")
        parts = []
        if self.n_words:
            parts.append(bag_of_words(list(captions), self.vocabulary))
        if self.clip_dim:
            embeddings = self._clip().encode_text(list(captions))
            if embeddings.shape[1] != self.clip_dim:
                raise ValueError(f"the CLIP text encoder gives {embeddings.shape[1]}-d embeddings but the model was "
                                 f"trained on {self.clip_dim}-d ones: clip_text_encoder names other weights")
            # Unit-norm embeddings have entries near 1/sqrt(D); scaled by sqrt(D) they are on the scale of
            # the 0/1 word presences beside them, so one learning rate suits both.
            parts.append(embeddings.astype(np.float32) * math.sqrt(self.clip_dim))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _clip(self) -> OpenClipEncoder:
        if self._encoder is None:
            assert self._clip_config is not None  # checked in __init__
            self._encoder = build_clip_text_encoder(self._clip_config)
        return self._encoder
