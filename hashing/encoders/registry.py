"""Encoder kinds by name, so stored configs (models, feature manifests) rebuild the right encoder.

A config is a pydantic model with a ``kind`` field; each kind registers its config class and a factory.
open_clip is built in; trained encoders (e.g. the DSMHN streams) register themselves on import.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hashing.encoders.base import FrameSpec, MediaEncoder
from hashing.encoders.identity import open_clip_identity
from hashing.encoders.weights import OpenClipEncoderConfig

# kind → module that registers it when imported (keeps optional, heavy imports lazy).
_KIND_MODULES = {
    "open_clip": "hashing.encoders.open_clip_encoder",
    "dsmhn": "hashing.methods.dsmhn.encoder",
}
_KINDS: dict[str, tuple[type[BaseModel], Callable[[Any], MediaEncoder]]] = {}
# Config classes that live apart from their (heavy) encoder module, so a stored config is read without torch.
_LIGHT_CONFIGS: dict[str, type[BaseModel]] = {"open_clip": OpenClipEncoderConfig}


def register_encoder_kind(kind: str, config_class: type[BaseModel], factory: Callable[[Any], MediaEncoder],
                          module: str | None = None) -> None:
    _KINDS[kind] = (config_class, factory)
    if module:
        _KIND_MODULES.setdefault(kind, module)


def _lookup(kind: str) -> tuple[type[BaseModel], Callable[[Any], MediaEncoder]]:
    if kind not in _KINDS and kind in _KIND_MODULES:
        importlib.import_module(_KIND_MODULES[kind])
    if kind not in _KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; known kinds: {', '.join(sorted(_KIND_MODULES))}")
    return _KINDS[kind]


def encoder_config_from_dict(data: Mapping[str, Any] | BaseModel) -> BaseModel:
    """The typed config of any encoder kind from its dict form (``kind`` defaults to open_clip)."""
    if isinstance(data, BaseModel):
        return data
    kind = str(data.get("kind", "open_clip"))
    config_class = _LIGHT_CONFIGS.get(kind) or _lookup(kind)[0]
    return config_class.model_validate(dict(data))


def build_media_encoder(config: Mapping[str, Any] | BaseModel) -> MediaEncoder:
    """Build the encoder a config describes, whatever its kind."""
    config = encoder_config_from_dict(config)
    _, factory = _lookup(getattr(config, "kind", "open_clip"))
    return factory(config)


@dataclass(frozen=True)
class EncoderFacts:
    """What a driver needs of an encoder to plan and store its features; the model itself lives in the workers."""

    encoder_id: str
    frame_spec: FrameSpec
    embed_dim: int
    description: dict


def media_encoder_facts(config: Mapping[str, Any] | BaseModel) -> EncoderFacts:
    """An encoder's facts. open_clip's come from its configs without building the model or importing torch
    (hashing/encoders/identity.py); other kinds are built once and released."""
    config = encoder_config_from_dict(config)
    if isinstance(config, OpenClipEncoderConfig):
        identity = open_clip_identity(config)
        return EncoderFacts(identity.encoder_id, identity.frame_spec, identity.embed_dim, identity.describe())
    encoder = build_media_encoder(config)
    facts = EncoderFacts(encoder.encoder_id, encoder.frame_spec, encoder.embed_dim, encoder.describe())
    del encoder
    gc.collect()  # the weights are freed now, not whenever the cycle collector next runs
    return facts
