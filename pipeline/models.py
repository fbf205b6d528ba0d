"""Hash models in the store: immutable versions ``models/<name>-<digest>/`` and aliases ``models/_aliases/<name>``.

A model is a fitted hasher plus everything needed to hash a new query the same way it hashed the archive: the
encoder configuration (architecture, weights identity), the sampling of video clips and, for DSMHN, its trained
streams (``streams/``). A saved model is never written again: training under the same name makes a new version
whose id carries the digest of its content, and the alias ``<name>`` moves to it. Indexes pin the exact version
(id and digest) their codes were made with, so retraining can never change what a published index answers
(docs/training.md, "Model versions"). ``metrics.json`` is a sidecar (the latest evaluation), not part of the
identity.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pydantic import BaseModel

from hashing.encoders import encoder_config_from_dict
from hashing.hashers import Hasher, make_hasher
from hashing.hashers.storage import CONFIG_FILE, ModelLoadError, load_hasher, save_hasher
from pipeline.errors import CorruptStoreError
from pipeline.sampling import SamplingConfig
from pipeline.store import TEMP_PREFIX, StoreLayout, StorePath, atomic_write_json, atomic_write_text, file_sha256, upload_directory

METRICS_FILE = "metrics.json"
STREAMS_DIR = "streams"  # model-local encoder files (DSMHN); an encoder config's model_dir points here on load
DIGEST_CHARS = 8
# Fields of config.json that name a location or the version itself, so they cannot be part of the digest.
UNDIGESTED_FIELDS = ("model_id", "name")
LOCATION_FIELDS = ("model_dir",)


@dataclass
class StoredModel:
    model_id: str
    hasher: Hasher
    encoder_config: BaseModel
    encoder_id: str
    sampling: SamplingConfig
    config: dict
    digest: str = ""


def model_exists(layout: StoreLayout, model_id: str) -> bool:
    directory = layout.model_dir(model_id)
    return (directory / "config.json").exists() and (directory / "weights.safetensors").exists()


def new_model_staging(layout: StoreLayout, name: str) -> Path:
    """A fresh local directory to assemble a model version in; pass it to ``save_model(..., staging=)``.

    A version's id is the digest of its content, so it is assembled first, then copied into the store with
    ``config.json`` last (a model without ``config.json`` is incomplete and never loaded). ``layout`` is unused
    but kept so callers say which store the model is for.
    """
    return Path(tempfile.mkdtemp(prefix=f"reelhash-model-{name}-"))


def _without_locations(value):
    if isinstance(value, dict):
        return {k: _without_locations(v) for k, v in value.items() if k not in LOCATION_FIELDS}
    return value


def safetensors_content_sha256(path: StorePath) -> str:
    """sha256 of a safetensors file's header (keys sorted) and data: the library writes the header's metadata map
    in a varying order, so identical tensors can give different file bytes."""
    data = path.read_bytes()
    try:
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size])
    except (ValueError, UnicodeDecodeError):
        return hashlib.sha256(data).hexdigest()  # not readable as safetensors: loading will say so
    canonical = json.dumps(header, sort_keys=True).encode() + data[8 + header_size :]
    return hashlib.sha256(canonical).hexdigest()


def model_digest(directory: StorePath) -> str:
    """sha256 of a model's content: every file but the metrics sidecar, config.json without its id and paths."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == METRICS_FILE or path.name.startswith(TEMP_PREFIX):
            continue
        if relative == CONFIG_FILE:
            config = json.loads(path.read_text(encoding="utf-8"))
            content = json.dumps(_without_locations({k: v for k, v in config.items() if k not in UNDIGESTED_FIELDS}),
                                 sort_keys=True).encode()
            part = hashlib.sha256(content).hexdigest()
        elif path.suffix == ".safetensors":
            part = safetensors_content_sha256(path)
        else:
            part = file_sha256(path)
        digest.update(f"{relative}\0{part}\n".encode())
    return digest.hexdigest()


def save_model(
    layout: StoreLayout,
    name: str,
    *,
    hasher: Hasher,
    encoder_config: BaseModel,
    encoder_info: dict,
    sampling: SamplingConfig,
    training: dict,
    staging: Path | None = None,
) -> str:
    """Save a new immutable model version and point the alias ``name`` at it; returns its id ``<name>-<digest>``.

    ``staging`` (from ``new_model_staging``) may already hold model-local files such as DSMHN ``streams/``.
    Saving identical content again finds the existing version and changes nothing but the alias.
    """
    staging = staging or new_model_staging(layout, name)
    try:
        save_hasher(hasher, staging, extra={
            "name": name, "encoder": _without_locations(encoder_info),
            "encoder_config": _without_locations(encoder_config.model_dump()), "sampling": sampling.model_dump(),
            "training": training,
        })
        model_id = f"{name}-{model_digest(staging)[:DIGEST_CHARS]}"
        config_path = staging / CONFIG_FILE
        config = json.loads(config_path.read_text(encoding="utf-8"))
        atomic_write_json(config_path, {**config, "model_id": model_id})
        if not model_exists(layout, model_id):
            # A concurrent save of the same content writes the same files: either copy is the model.
            upload_directory(staging, layout.model_dir(model_id), last=CONFIG_FILE)
        set_model_alias(layout, name, model_id)
        return model_id
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def set_model_alias(layout: StoreLayout, alias: str, model_id: str) -> None:
    atomic_write_text(layout.model_alias_path(alias), model_id + "\n")


def resolve_model_id(layout: StoreLayout, reference: str) -> str:
    """The concrete model id of what a user named: an alias (the newest version saved under that name) or an id.

    Resolve once, where a run or command starts; everything after works with the concrete id.
    """
    alias = layout.model_alias_path(reference)
    if alias.is_file():
        return alias.read_text(encoding="utf-8").strip()
    if layout.model_dir(reference).is_dir():
        return reference
    raise model_not_found(layout, reference)


def model_not_found(layout: StoreLayout, reference: str) -> ModelLoadError:
    models = layout.models_dir()
    known = sorted(p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if models.is_dir() else []
    aliases = sorted(p.name for p in (models / "_aliases").iterdir()) if (models / "_aliases").is_dir() else []
    return ModelLoadError(
        f"model '{reference}' not found under {models}"
        + (f"; aliases: {', '.join(aliases)}" if aliases else "")
        + (f"; known models: {', '.join(known)}" if known else "; index a collection or train a model to create one")
    )


def save_model_metrics(layout: StoreLayout, model_id: str, metrics: dict) -> None:
    atomic_write_json(layout.model_dir(model_id) / METRICS_FILE, metrics)


def load_model(layout: StoreLayout, model_id: str, *, expected_digest: str | None = None) -> StoredModel:
    """Load the model version ``model_id``; a missing or corrupt model raises ``ModelLoadError`` saying what to do.

    A version directory of that name wins over an alias of that name (a store from before model versions may
    hold both: its index manifests pin the old directory). Users' references go through ``resolve_model_id``.
    ``expected_digest`` (what an index version pinned) must match the files, else ``CorruptStoreError``: queries
    must never be hashed with weights other than the ones that made the index's codes.
    """
    if not layout.model_dir(model_id).is_dir():
        model_id = resolve_model_id(layout, model_id)
    directory = layout.model_dir(model_id)
    hasher, config = load_hasher(directory)
    try:
        stored_encoder = dict(config["encoder_config"])
        if (directory / STREAMS_DIR).is_dir():
            stored_encoder["model_dir"] = str(directory / STREAMS_DIR)
        encoder_config = encoder_config_from_dict(stored_encoder)
        sampling = SamplingConfig.model_validate(config["sampling"])
        encoder_id = config["encoder"]["encoder_id"]
    except (KeyError, ValueError) as error:
        raise ModelLoadError(f"{directory / 'config.json'} lacks the encoder or sampling description: {error}") from error
    digest = model_digest(directory)
    if expected_digest is not None and digest != expected_digest:
        raise CorruptStoreError(
            f"model {model_id} under {directory} no longer matches the digest its index version pinned "
            f"({digest[:12]} != {expected_digest[:12]}): its files were changed; restore them or run "
            "'reelhash rollback' / re-index"
        )
    return StoredModel(model_id, hasher, encoder_config, encoder_id, sampling, config, digest)


def fittable_method(method: str, n_bits: int, n_embeddings: int, dim: int) -> tuple[str, str | None]:
    """The method to fit and a warning when it is not the one asked for.

    ITQ needs ``n_bits`` ≤ the embedding width and at least ``n_bits`` embeddings; a small collection (15 short
    videos give ~40 embeddings) cannot fit a 64-bit ITQ model, so it gets LSH, which needs neither, rather than
    failing after everything was decoded (README, "Hash methods").
    """
    if method == "itq" and (n_bits > n_embeddings or n_bits > dim):
        reason = (f"only {n_embeddings} embeddings" if n_bits > n_embeddings else f"embeddings of width {dim}")
        return "lsh", (f"a {n_bits}-bit ITQ model cannot be fitted on {reason}; fitted LSH instead "
                       f"(index more videos, or choose --bits {min(n_embeddings, dim) // 8 * 8 or 16} or less, "
                       "for ITQ)")
    return method, None


def fit_hasher(method: str, n_bits: int, seed: int, clip_embeddings: np.ndarray, text_embeddings: np.ndarray) -> Hasher:
    """Fit an unsupervised hasher on both modalities at once (CLIP embeds them in one space)."""
    training = np.concatenate([clip_embeddings, text_embeddings]) if len(text_embeddings) else clip_embeddings
    try:
        return make_hasher(method, n_bits, seed).fit(training)
    except ValueError as error:
        raise ValueError(f"cannot fit a {n_bits}-bit {method} model on {len(training)} embeddings: {error}") from error


def model_summary(model: StoredModel) -> dict:
    """What an index manifest records about the model that made its codes (encoder identity, method, sampling)."""
    return {"model_id": model.model_id, **model.config.get("encoder", {}), "method": model.hasher.method,
            "sampling": model.sampling.model_dump(), "digest": model.digest}
