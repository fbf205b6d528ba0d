"""Hash models in the store: ``models/<model_id>/config.json`` + ``weights.safetensors`` + ``metrics.json``.

A model is a fitted hasher plus everything needed to hash a new query the same way it hashed the archive:
the encoder configuration (architecture, weights identity) and the sampling of video clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pydantic import BaseModel

from hashing.encoders import encoder_config_from_dict
from hashing.hashers import Hasher, make_hasher
from hashing.hashers.storage import ModelLoadError, load_hasher, save_hasher
from pipeline.sampling import SamplingConfig
from pipeline.store import StoreLayout, atomic_write_json


@dataclass
class StoredModel:
    model_id: str
    hasher: Hasher
    encoder_config: BaseModel
    encoder_id: str
    sampling: SamplingConfig
    config: dict


def model_exists(layout: StoreLayout, model_id: str) -> bool:
    directory = layout.model_dir(model_id)
    return (directory / "config.json").exists() and (directory / "weights.safetensors").exists()


def save_model(
    layout: StoreLayout,
    model_id: str,
    *,
    hasher: Hasher,
    encoder_config: BaseModel,
    encoder_info: dict,
    sampling: SamplingConfig,
    training: dict,
) -> None:
    save_hasher(
        hasher,
        layout.model_dir(model_id),
        extra={
            "model_id": model_id,
            "encoder": encoder_info,
            "encoder_config": encoder_config.model_dump(),
            "sampling": sampling.model_dump(),
            "training": training,
        },
    )


def save_model_metrics(layout: StoreLayout, model_id: str, metrics: dict) -> None:
    atomic_write_json(layout.model_dir(model_id) / "metrics.json", metrics)


def load_model(layout: StoreLayout, model_id: str) -> StoredModel:
    """Load a saved model; a missing or corrupt model raises ``ModelLoadError`` saying what to do."""
    directory = layout.model_dir(model_id)
    if not directory.exists():
        known = sorted(p.name for p in directory.parent.iterdir()) if directory.parent.exists() else []
        raise ModelLoadError(
            f"model '{model_id}' not found under {directory.parent}"
            + (f"; known models: {', '.join(known)}" if known else "; index a collection to create one")
        )
    hasher, config = load_hasher(directory)
    try:
        encoder_config = encoder_config_from_dict(config["encoder_config"])
        sampling = SamplingConfig.model_validate(config["sampling"])
        encoder_id = config["encoder"]["encoder_id"]
    except (KeyError, ValueError) as error:
        raise ModelLoadError(f"{directory / 'config.json'} lacks the encoder or sampling description: {error}") from error
    return StoredModel(model_id, hasher, encoder_config, encoder_id, sampling, config)


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
            "sampling": model.sampling.model_dump()}
