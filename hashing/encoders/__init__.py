"""Media and text encoders: frames/clips/captions -> L2-normalised embeddings in one space.

``FrameSpec`` and ``MediaEncoder`` are imported eagerly (numpy only). Device helpers and the
open_clip encoder are loaded on first use, because importing open_clip costs seconds and decode
workers only need the FrameSpec contract. The encoder's config and weight checks (``weights``) need
no torch, so commands check them before anything heavy starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hashing.encoders.base import FrameSpec, MediaEncoder, check_clips, check_frames

_LAZY_EXPORTS = {
    "select_device": "hashing.encoders.device",
    "gpu_count": "hashing.encoders.device",
    "HOW_TO_PROVIDE_WEIGHTS": "hashing.encoders.weights",
    "MODEL_CONFIG_DIR": "hashing.encoders.weights",
    "OpenClipEncoder": "hashing.encoders.open_clip_encoder",
    "OpenClipEncoderConfig": "hashing.encoders.weights",
    "WeightsUnavailableError": "hashing.encoders.weights",
    "build_encoder": "hashing.encoders.open_clip_encoder",
    "check_encoder_options": "hashing.encoders.weights",
    "check_weights_available": "hashing.encoders.weights",
    "find_cached_pretrained": "hashing.encoders.weights",
    "pretrained_weights_file": "hashing.encoders.weights",
    "register_model_configs": "hashing.encoders.open_clip_encoder",
    "build_media_encoder": "hashing.encoders.registry",
    "EncoderFacts": "hashing.encoders.registry",
    "media_encoder_facts": "hashing.encoders.registry",
    "encoder_config_from_dict": "hashing.encoders.registry",
    "register_encoder_kind": "hashing.encoders.registry",
}

__all__ = ["FrameSpec", "MediaEncoder", "check_clips", "check_frames", *_LAZY_EXPORTS]

if TYPE_CHECKING:
    from hashing.encoders.device import gpu_count, select_device
    from hashing.encoders.open_clip_encoder import OpenClipEncoder, build_encoder, register_model_configs
    from hashing.encoders.weights import (
        HOW_TO_PROVIDE_WEIGHTS,
        MODEL_CONFIG_DIR,
        OpenClipEncoderConfig,
        WeightsUnavailableError,
        check_encoder_options,
        check_weights_available,
        find_cached_pretrained,
        pretrained_weights_file,
    )
    from hashing.encoders.registry import (
        EncoderFacts,
        build_media_encoder,
        encoder_config_from_dict,
        media_encoder_facts,
        register_encoder_kind,
    )


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
