"""What an open_clip encoder is — its weights, frame spec, embedding size and id — settled without torch.

The driver of an index run needs these facts (the id names the feature cache, the frame spec tells decoders
what to produce) but not the model: building ViT-B-32 costs seconds and about 1.5 GB, and the encoder actors
build their own. So everything here comes from open_clip's JSON configs and tag table (``weights.py``), and
``OpenClipEncoder`` takes its facts from here too and checks that the model it built agrees
(docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hashing.encoders.base import FrameSpec
from hashing.encoders.weights import (
    OpenClipEncoderConfig,
    arch_model_cfg,
    clean_tag,
    open_clip_torch_free_module,
    pretrained_cfg,
    weights_file,
)
from hashing.files import file_sha256

# Bumped only if the way embeddings are computed changes (pooling, normalisation), which would
# make previously cached features incompatible with new queries.
ENCODER_ID_VERSION = 1


@dataclass(frozen=True)
class ResolvedWeights:
    """Where an encoder's weights come from, settled before any model is built."""

    kind: Literal["pretrained", "checkpoint", "random"]
    file: Path | None  # the local file to load; None for random weights
    identity: dict[str, Any]  # json-able; what makes these weights these weights
    preprocess_overrides: dict[str, Any]  # mean/std/... that a pretrained tag was trained with
    force_quick_gelu: bool  # a tag trained with QuickGELU on an arch config without it


def resolve_weights(config: OpenClipEncoderConfig, model_cfg: Mapping[str, Any],
                    log: Callable[[str], None] | None = None) -> ResolvedWeights:
    """Settle where the weights come from, or raise WeightsUnavailableError saying how to fix it.

    A pretrained tag's file not yet in the cache is downloaded here, unless offline (see weights.py).
    """
    path = weights_file(config, log)
    if config.checkpoint_path is not None:
        # Content, not path or mtime: the same file copied elsewhere gives the same embeddings,
        # and a file overwritten in place with new weights must not reuse old cached features.
        return ResolvedWeights(
            kind="checkpoint",
            file=path,
            identity={"kind": "checkpoint", "sha256": file_sha256(path)},
            preprocess_overrides={},
            force_quick_gelu=False,
        )
    if config.pretrained is not None:
        tag_cfg = pretrained_cfg(config.arch, config.pretrained)
        overrides = {key: tag_cfg[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in tag_cfg}
        # open_clip only *warns* when a QuickGELU-trained tag (e.g. ViT-B-32 'openai') is loaded
        # into a GELU config; the embeddings are then subtly wrong, so use the activation it was trained with.
        force_quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
        return ResolvedWeights(
            kind="pretrained",
            file=path,
            identity={"kind": "pretrained", "tag": clean_tag(config.pretrained)},
            preprocess_overrides=overrides,
            force_quick_gelu=force_quick_gelu,
        )
    return ResolvedWeights(
        kind="random",
        file=None,
        identity={"kind": "random", "seed": config.random_seed},
        preprocess_overrides={},
        force_quick_gelu=False,
    )


def expected_frame_spec(model_cfg: Mapping[str, Any], weights: ResolvedWeights) -> FrameSpec:
    """The frames open_clip's model will expect: its vision tower's image size, and the normalisation open_clip
    sets on it (its defaults, overridden by what a pretrained tag was trained with; a checkpoint file or random
    weights keep the defaults, because reelhash hands open_clip a file path, never a tag)."""
    size = model_cfg["vision_cfg"].get("image_size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height != width:
        raise ValueError(f"only square image inputs are supported, the model expects {height}x{width}")
    constants = open_clip_torch_free_module("constants")
    mean = weights.preprocess_overrides.get("mean", constants.OPENAI_DATASET_MEAN)
    std = weights.preprocess_overrides.get("std", constants.OPENAI_DATASET_STD)
    return FrameSpec(size=int(height), mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
                     std=tuple(float(v) for v in std))  # type: ignore[arg-type]


def encoder_id(arch: str, model_cfg: Mapping[str, Any], weights: ResolvedWeights, spec: FrameSpec) -> str:
    # Precision, device and batch size are left out on purpose: they move embeddings by float
    # noise only, and a GPU-built index must accept queries encoded on a CPU.
    identity = {
        "version": ENCODER_ID_VERSION,
        "encoder": "open_clip",
        "arch": arch,
        "model_cfg": model_cfg,
        "weights": weights.identity,
        "frame_spec": {"size": spec.size, "mean": list(spec.mean), "std": list(spec.std)},
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    label = {
        "pretrained": weights.identity.get("tag", ""),
        "checkpoint": "ckpt",
        "random": f"random{weights.identity.get('seed', '')}",
    }[weights.kind]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{arch}-{label}")
    return f"{readable}-{digest[:16]}"


@dataclass(frozen=True)
class OpenClipIdentity:
    """An open_clip encoder's facts, as its built model will have them."""

    config: OpenClipEncoderConfig
    model_cfg: dict[str, Any]  # open_clip's arch config, with QuickGELU forced where the weights need it
    weights: ResolvedWeights
    frame_spec: FrameSpec
    embed_dim: int
    encoder_id: str

    @property
    def weights_are_random(self) -> bool:
        return self.weights.kind == "random"

    def describe(self) -> dict[str, Any]:
        """JSON-able identity, enough to rebuild the encoder with OpenClipEncoderConfig.from_description."""
        checkpoint = self.weights.file if self.weights.kind == "checkpoint" else None
        return {
            "encoder": "open_clip",
            "encoder_id": self.encoder_id,
            "arch": self.config.arch,
            "pretrained": self.weights.identity.get("tag"),
            "checkpoint_path": str(checkpoint) if checkpoint is not None else None,
            "checkpoint_sha256": self.weights.identity.get("sha256"),
            "random_weights": self.weights_are_random,
            "random_seed": self.config.random_seed if self.weights_are_random else None,
            "embed_dim": self.embed_dim,
            "frame_size": self.frame_spec.size,
            "image_mean": list(self.frame_spec.mean),
            "image_std": list(self.frame_spec.std),
            "quick_gelu": bool(self.model_cfg.get("quick_gelu", False)),
            "open_clip_version": open_clip_torch_free_module("version").__version__,
        }


def open_clip_identity(config: OpenClipEncoderConfig, log: Callable[[str], None] | None = None) -> OpenClipIdentity:
    """Settle the encoder's weights (downloading a tag's file if needed) and derive its facts, without torch."""
    model_cfg = arch_model_cfg(config.arch)
    weights = resolve_weights(config, model_cfg, log)
    if weights.force_quick_gelu:
        model_cfg = {**model_cfg, "quick_gelu": True}
    spec = expected_frame_spec(model_cfg, weights)
    return OpenClipIdentity(config=config, model_cfg=model_cfg, weights=weights, frame_spec=spec,
                            embed_dim=int(model_cfg["embed_dim"]),
                            encoder_id=encoder_id(config.arch, model_cfg, weights, spec))
