"""CLIP frame, clip and text encoder on top of open_clip, with weights that never come from the network.

Weights come from exactly one place: a local checkpoint file, an open_clip pretrained tag whose
files are already in the local cache, or (only when explicitly allowed) a seeded random init.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hashing.encoders.base import FrameSpec, check_clips, check_frames
from hashing.files import file_sha256
from hashing.encoders.device import select_device

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"

HOW_TO_PROVIDE_WEIGHTS = (
    "Provide CLIP weights in one of these ways:\n"
    "  --clip-checkpoint PATH   a local open_clip checkpoint or state-dict file "
    "(.pt/.pth/.bin/.safetensors) for this architecture;\n"
    "  --clip-pretrained TAG    an open_clip pretrained tag (e.g. 'openai' for ViT-B-32) whose weights "
    "are already in the local cache (the Hugging Face hub cache, see HF_HOME/HF_HUB_CACHE, or "
    "~/.cache/clip). reelhash never downloads weights: fetch them beforehand on a machine with "
    "internet access (e.g. `hf download timm/vit_base_patch32_clip_224.openai`) and run with "
    "HF_HUB_OFFLINE=1;\n"
    "  --random-weights         seeded random weights, for tests and demos only "
    "(text search is then at chance level)."
)

# Bumped only if the way embeddings are computed changes (pooling, normalisation), which would
# make previously cached features incompatible with new queries.
_ENCODER_ID_VERSION = 1


class WeightsUnavailableError(RuntimeError):
    """No usable CLIP weights: none configured, not in the local cache, missing or unloadable file."""


def register_model_configs() -> None:
    """Make reelhash's own architectures (model_configs/*.json, e.g. reelhash-tiny) known to open_clip.

    Idempotent: open_clip appends to its search path on every call, so only register once per process.
    """
    ours = {path.stem for path in MODEL_CONFIG_DIR.glob("*.json")}
    if not ours.issubset(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed only up to the batch's last non-padding token.

    CLIP pads every caption to 77 tokens, but its text transformer is causal: the output at a position depends only
    on the positions before it, and the pooled output is taken at the end-of-text token. Dropping the padding
    after the longest caption therefore gives the same embedding (within 2e-6) with about 6× less work for captions
    of ~12 tokens (ViT-B-32 on this project's 2-core machine: 0.68 s instead of 3.8 s for 60 captions). Models
    without a causal mask or with another pooling take open_clip's own path.
    """
    pooled_at_token = getattr(model, "text_pool_type", None) in ("argmax", "eos")
    if not (isinstance(model, open_clip.model.CLIP) and pooled_at_token and getattr(model, "attn_mask", None) is not None
            and tokens.ndim == 2 and tokens.shape[1] == model.positional_embedding.shape[0]):
        return model.encode_text(tokens)
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    length = max(1, int(((tokens != 0) * positions).max()))
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = open_clip.transformer.text_global_pool(x, tokens, model.text_pool_type,
                                               eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return x


class OpenClipEncoderConfig(BaseModel):
    """Which open_clip model to run, with which weights, where and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["open_clip"] = "open_clip"
    arch: str = "ViT-B-32"
    pretrained: str | None = None
    checkpoint_path: str | None = None
    allow_random_weights: bool = False
    random_seed: int = Field(default=0, ge=0)
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    batch_size: int = Field(default=64, gt=0, description="images or texts per forward pass")
    cache_dir: str | None = Field(
        default=None, description="open_clip/HF cache dir to look for pretrained tags; None = the default caches"
    )

    @field_validator("pretrained", "checkpoint_path", "cache_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _one_weights_source(self) -> OpenClipEncoderConfig:
        if self.pretrained is not None and self.checkpoint_path is not None:
            raise ValueError(
                "give either pretrained (an open_clip tag) or checkpoint_path (a local file), not both"
            )
        return self

    @classmethod
    def from_description(cls, description: Mapping[str, Any], **runtime: Any) -> OpenClipEncoderConfig:
        """Rebuild the config of an encoder from its ``describe()`` output (e.g. stored with features).

        ``runtime`` sets the fields that do not change embeddings: device, precision, batch_size, cache_dir.
        """
        if description.get("encoder") != "open_clip":
            raise ValueError(f"not an open_clip encoder description: {dict(description)!r}")
        random_weights = bool(description["random_weights"])
        return cls(
            arch=description["arch"],
            pretrained=description.get("pretrained"),
            checkpoint_path=description.get("checkpoint_path"),
            allow_random_weights=random_weights,
            random_seed=description.get("random_seed") or 0,
            **runtime,
        )


@dataclass(frozen=True)
class ResolvedWeights:
    """Where an encoder's weights come from, settled before any model is built."""

    kind: Literal["pretrained", "checkpoint", "random"]
    file: Path | None  # the local file to load; None for random weights
    identity: dict[str, Any]  # json-able; what makes these weights these weights
    preprocess_overrides: dict[str, Any]  # mean/std/... that a pretrained tag was trained with
    force_quick_gelu: bool  # a tag trained with QuickGELU on an arch config without it


def _clean_tag(tag: str) -> str:
    # open_clip normalises tags the same way ("LAION2B-s34B" == "laion2b_s34b").
    return tag.lower().replace("-", "_")


def _hf_weight_filenames(filename: str) -> list[str]:
    # Mirrors open_clip.pretrained.download_pretrained_from_hf: a .safetensors twin is preferred.
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def find_cached_pretrained(arch: str, tag: str, cache_dir: str | None = None) -> Path:
    """Local file holding the weights of open_clip tag ``tag`` for ``arch``, without touching the network.

    open_clip's own loader calls ``hf_hub_download`` / ``urlopen``, which try the network (and
    ``HF_HUB_OFFLINE`` is read only when huggingface_hub is imported), so we look in the same
    places it would cache to: the HF hub cache, then the URL download directory (~/.cache/clip).
    """
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsUnavailableError(
            f"{tag!r} is not an open_clip pretrained tag for arch {arch!r} "
            f"(known tags: {', '.join(known) or 'none'}).\n{HOW_TO_PROVIDE_WEIGHTS}"
        )
    if "file" in tag_cfg and os.path.isfile(tag_cfg["file"]):
        return Path(tag_cfg["file"])

    looked_in: list[str] = []
    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_WEIGHTS_NAME

        # open_clip's convention: "org/repo/" means the default weights file name.
        repo_id, filename = os.path.split(hf_hub)
        for name in _hf_weight_filenames(filename or HF_WEIGHTS_NAME):
            looked_in.append(f"Hugging Face cache: {repo_id}/{name}")
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = tag_cfg.get("url", "")
    if url:
        candidate = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(url)
        looked_in.append(f"download cache: {candidate}")
        if candidate.is_file():
            return candidate

    raise WeightsUnavailableError(
        f"weights for open_clip arch {arch!r} tag {tag!r} are not in the local cache "
        f"(looked for: {'; '.join(looked_in)}).\n{HOW_TO_PROVIDE_WEIGHTS}"
    )


def resolve_weights(config: OpenClipEncoderConfig, model_cfg: Mapping[str, Any]) -> ResolvedWeights:
    """Settle where the weights come from, or raise WeightsUnavailableError saying how to fix it."""
    check_weights_available(config)
    if config.checkpoint_path is not None:
        path = Path(config.checkpoint_path).expanduser().resolve()
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
        path = find_cached_pretrained(config.arch, config.pretrained, config.cache_dir)
        tag_cfg = open_clip.get_pretrained_cfg(config.arch, config.pretrained)
        overrides = {key: tag_cfg[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in tag_cfg}
        # open_clip only *warns* when a QuickGELU-trained tag (e.g. ViT-B-32 'openai') is loaded
        # into a GELU config; the embeddings are then subtly wrong, so use the activation it was trained with.
        force_quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
        return ResolvedWeights(
            kind="pretrained",
            file=path,
            identity={"kind": "pretrained", "tag": _clean_tag(config.pretrained)},
            preprocess_overrides=overrides,
            force_quick_gelu=force_quick_gelu,
        )
    if config.allow_random_weights:
        return ResolvedWeights(
            kind="random",
            file=None,
            identity={"kind": "random", "seed": config.random_seed},
            preprocess_overrides={},
            force_quick_gelu=False,
        )
    raise AssertionError("check_weights_available accepted a config without weights")  # unreachable


def check_weights_available(config: OpenClipEncoderConfig) -> None:
    """Raise now what building the encoder would raise for lack of weights or an unknown architecture.

    Loads no weights and hashes no file, so a command can fail in a second instead of after starting Prefect
    and Ray and decoding the collection.
    """
    _arch_model_cfg(config.arch)
    if config.checkpoint_path is not None:
        path = Path(config.checkpoint_path).expanduser().resolve()
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise WeightsUnavailableError(f"CLIP checkpoint {path} {what}.\n{HOW_TO_PROVIDE_WEIGHTS}")
    elif config.pretrained is not None:
        find_cached_pretrained(config.arch, config.pretrained, config.cache_dir)
    elif not config.allow_random_weights:
        raise WeightsUnavailableError(
            f"no weights configured for open_clip arch {config.arch!r}, and random weights were not "
            f"explicitly allowed.\n{HOW_TO_PROVIDE_WEIGHTS}"
        )


def _arch_model_cfg(arch: str) -> dict[str, Any]:
    register_model_configs()
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None or "/" in arch or ":" in arch:
        raise ValueError(
            f"unknown open_clip architecture {arch!r}; use a built-in name such as 'ViT-B-32', "
            "'ViT-B-16', 'ViT-L-14' or reelhash's 'reelhash-tiny' (see open_clip.list_models())"
        )
    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name") or "siglip" in arch.lower():
        # These load a tokenizer / text tower through transformers from the HF hub at build time.
        raise ValueError(
            f"open_clip architecture {arch!r} needs a Hugging Face tokenizer or text model, which "
            "reelhash cannot load offline; use an arch with open_clip's built-in tokenizer (e.g. ViT-B-32)"
        )
    return model_cfg


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _encoder_id(arch: str, model_cfg: Mapping[str, Any], weights: ResolvedWeights, spec: FrameSpec) -> str:
    # Precision, device and batch size are left out on purpose: they move embeddings by float
    # noise only, and a GPU-built index must accept queries encoded on a CPU.
    identity = {
        "version": _ENCODER_ID_VERSION,
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


def _frame_spec_of(model: torch.nn.Module) -> FrameSpec:
    visual = model.visual
    size = visual.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height != width:
        raise ValueError(f"only square image inputs are supported, the model expects {height}x{width}")
    preprocess = getattr(visual, "preprocess_cfg", {})
    mean = tuple(float(v) for v in preprocess.get("mean", visual.image_mean or open_clip.OPENAI_DATASET_MEAN))
    std = tuple(float(v) for v in preprocess.get("std", visual.image_std or open_clip.OPENAI_DATASET_STD))
    return FrameSpec(size=int(height), mean=mean, std=std)  # type: ignore[arg-type]


def _create_model(arch: str, weights: ResolvedWeights, seed: int) -> torch.nn.Module:
    # Built on the CPU under a fixed seed so random weights are identical in every process
    # (an index built by a Ray actor must match queries encoded later by the CLI); fork_rng
    # keeps the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(
                arch,
                # An absolute file path, so open_clip never mistakes it for a tag to download.
                pretrained=str(weights.file) if weights.file is not None else None,
                force_quick_gelu=weights.force_quick_gelu,
                force_preprocess_cfg=weights.preprocess_overrides or None,
                pretrained_image=False,  # no timm / HF tower downloads
                pretrained_text=False,
                precision="fp32",
                device="cpu",
            )
        except Exception as error:
            if weights.file is None:
                raise
            raise WeightsUnavailableError(
                f"could not load CLIP weights from {weights.file} into open_clip arch {arch!r}: {error}\n"
                "Check that the checkpoint was trained for this architecture (a raw state dict, or "
                "{'state_dict': ...}, optionally with 'module.' prefixes).\n" + HOW_TO_PROVIDE_WEIGHTS
            ) from error
    return model.eval()


class OpenClipEncoder:
    """open_clip CLIP as a MediaEncoder: per-frame image embeddings, mean-pooled per clip, and text embeddings."""

    def __init__(self, config: OpenClipEncoderConfig) -> None:
        self._config = config
        model_cfg = _arch_model_cfg(config.arch)
        self._weights = resolve_weights(config, model_cfg)
        if self._weights.force_quick_gelu:
            model_cfg = {**model_cfg, "quick_gelu": True}
        self._device = select_device(config.device)
        self._autocast_dtype = _autocast_dtype(config.precision, self._device)

        self._model = _create_model(config.arch, self._weights, config.random_seed).to(self._device)
        self._tokenizer = open_clip.get_tokenizer(config.arch)
        self._frame_spec = _frame_spec_of(self._model)
        self._model_cfg = model_cfg
        self._embed_dim = int(model_cfg["embed_dim"])
        self._encoder_id = _encoder_id(config.arch, model_cfg, self._weights, self._frame_spec)
        shape = (1, 3, 1, 1)
        self._pixel_mean = torch.tensor(self._frame_spec.mean, dtype=torch.float32, device=self._device).view(shape)
        self._pixel_std = torch.tensor(self._frame_spec.std, dtype=torch.float32, device=self._device).view(shape)

    @property
    def config(self) -> OpenClipEncoderConfig:
        return self._config

    @property
    def encoder_id(self) -> str:
        return self._encoder_id

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def frame_spec(self) -> FrameSpec:
        return self._frame_spec

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def weights_are_random(self) -> bool:
        return self._weights.kind == "random"

    def describe(self) -> dict[str, Any]:
        """JSON-able identity, enough to rebuild the encoder with OpenClipEncoderConfig.from_description."""
        checkpoint = self._weights.file if self._weights.kind == "checkpoint" else None
        return {
            "encoder": "open_clip",
            "encoder_id": self._encoder_id,
            "arch": self._config.arch,
            "pretrained": self._weights.identity.get("tag"),
            "checkpoint_path": str(checkpoint) if checkpoint is not None else None,
            "checkpoint_sha256": self._weights.identity.get("sha256"),
            "random_weights": self.weights_are_random,
            "random_seed": self._config.random_seed if self.weights_are_random else None,
            "embed_dim": self._embed_dim,
            "frame_size": self._frame_spec.size,
            "image_mean": list(self._frame_spec.mean),
            "image_std": list(self._frame_spec.std),
            "quick_gelu": bool(self._model_cfg.get("quick_gelu", False)),
            "open_clip_version": open_clip.__version__,
        }

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        check_frames(frames, self._frame_spec)
        out = np.empty((len(frames), self._embed_dim), dtype=np.float32)
        step = self._config.batch_size
        with torch.inference_mode():
            for start in range(0, len(frames), step):
                out[start : start + step] = self._frame_embeddings(frames[start : start + step]).cpu().numpy()
        return out

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        check_clips(clips, self._frame_spec)
        n_clips, frames_per_clip = clips.shape[:2]
        out = np.empty((n_clips, self._embed_dim), dtype=np.float32)
        # batch_size counts images per forward pass; whole clips go together so pooling stays on-device.
        step = max(1, self._config.batch_size // frames_per_clip)
        size = self._frame_spec.size
        with torch.inference_mode():
            for start in range(0, n_clips, step):
                batch = clips[start : start + step]
                per_frame = self._frame_embeddings(batch.reshape(-1, size, size, 3))
                # CLIP4Clip mean pooling: unit-norm frames, average over the clip, normalise again.
                pooled = per_frame.view(len(batch), frames_per_clip, -1).mean(dim=1)
                out[start : start + step] = F.normalize(pooled, dim=-1).cpu().numpy()
        return out

    def encode_text(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("encode_text expects a list of strings")
        texts = list(texts)
        out = np.empty((len(texts), self._embed_dim), dtype=np.float32)
        step = self._config.batch_size
        with torch.inference_mode():
            for start in range(0, len(texts), step):
                tokens = self._tokenizer(texts[start : start + step]).to(self._device)
                with self._autocast():
                    embeddings = encode_text_trimmed(self._model, tokens)
                out[start : start + step] = F.normalize(embeddings.float(), dim=-1).cpu().numpy()
        return out

    def query_warnings(self, text: str) -> list[str]:
        return []  # CLIP's tokenizer reads any text

    def _frame_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [n, S, S, 3] -> unit-norm float32 [n, D] on the device."""
        # Move uint8 to the device and normalise there: 4x less host-to-device traffic than float32.
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self._device)
        pixels = pixels.permute(0, 3, 1, 2).float().div_(255.0).sub_(self._pixel_mean).div_(self._pixel_std)
        with self._autocast():
            embeddings = self._model.encode_image(pixels)
        return F.normalize(embeddings.float(), dim=-1)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self._autocast_dtype)


def build_encoder(config: OpenClipEncoderConfig, expected_encoder_id: str | None = None) -> OpenClipEncoder:
    """Build the encoder; with ``expected_encoder_id``, refuse one that would not match stored features."""
    encoder = OpenClipEncoder(config)
    if expected_encoder_id is not None and encoder.encoder_id != expected_encoder_id:
        raise ValueError(
            f"encoder {encoder.encoder_id!r} does not match the expected {expected_encoder_id!r}: "
            "its embeddings would not be comparable with the stored features (different arch, weights or seed)"
        )
    return encoder


def _register() -> None:
    from hashing.encoders.registry import register_encoder_kind

    register_encoder_kind("open_clip", OpenClipEncoderConfig, OpenClipEncoder)


_register()
