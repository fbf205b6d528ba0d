"""Save and load hashers as ``config.json`` + ``weights.safetensors`` (never pickle).

``config.json`` is one flat JSON object: ``format_version``, the hasher's own config (``method``,
``n_bits``, ``dim``, ``seed``, method options) and the caller's ``extra`` fields (encoder identity,
thresholds, metrics...). The weights are written first and ``config.json`` last, each through a
temporary file and ``os.replace``, so a directory with a ``config.json`` holds a complete model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from hashing.files import as_path, atomic_write_bytes, make_directory
from hashing.hashers.base import Hasher, hasher_class

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


class ModelLoadError(Exception):
    """A saved hash model is missing, incomplete, corrupt or of an unknown kind."""


def save_hasher(hasher: Hasher, directory: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write a fitted hasher to ``directory`` (created if needed); returns the directory."""
    if not hasher.is_fitted:
        raise ValueError(f"{type(hasher).__name__} is not fitted: call fit() before saving")
    config: dict[str, Any] = {"format_version": FORMAT_VERSION, **hasher.config()}
    clashes = sorted(set(extra or {}) & set(config))
    if clashes:
        raise ValueError(f"extra fields {clashes} clash with the hasher's own config fields; rename them")
    config.update(extra or {})
    try:
        config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    except TypeError as error:
        raise ValueError(f"config/extra must be JSON-serialisable: {error}") from error

    state = {name: np.ascontiguousarray(array) for name, array in hasher.state().items()}
    weights = safetensors.numpy.save(
        state, metadata={"method": hasher.method, "format_version": str(FORMAT_VERSION)}
    )
    directory = as_path(directory)
    make_directory(directory)
    atomic_write_bytes(directory / WEIGHTS_FILE, weights)
    atomic_write_bytes(directory / CONFIG_FILE, config_text.encode("utf-8"))
    return directory


def load_hasher(directory: str | os.PathLike[str]) -> tuple[Hasher, dict[str, Any]]:
    """Load a hasher saved by :func:`save_hasher`; returns it and the whole ``config.json``."""
    directory = as_path(directory)
    if not directory.is_dir():
        raise ModelLoadError(
            f"model directory {directory} does not exist: check the path or train/fit a model first"
        )
    config = _read_config(directory / CONFIG_FILE)
    method = config.get("method")
    if not isinstance(method, str):
        raise ModelLoadError(f"{directory / CONFIG_FILE} has no 'method' field: it is not a hash model config")
    try:
        cls = hasher_class(method)
    except ValueError as error:
        raise ModelLoadError(f"{directory / CONFIG_FILE}: {error}") from None
    except ImportError as error:
        raise ModelLoadError(
            f"{directory / CONFIG_FILE}: the module of hash method {method!r} failed to import ({error})"
        ) from error
    state = _read_weights(directory / WEIGHTS_FILE)
    try:
        hasher = cls.from_state(config, state)
    except (ValueError, TypeError) as error:
        raise ModelLoadError(
            f"{directory}: {WEIGHTS_FILE} does not match {CONFIG_FILE} ({error}); "
            "the files come from different models or were edited: re-save the model"
        ) from error
    return hasher, config


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing: the model was never saved completely; re-run the fit/train step"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is not valid JSON ({error}); re-save the model") from error
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, found {type(config).__name__}")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path} has format_version={version!r}; this reelhash reads format_version="
            f"{FORMAT_VERSION}: re-save the model with this version"
        )
    return config


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: the model directory is incomplete; re-save the model")
    try:
        return safetensors.numpy.load(path.read_bytes())
    except Exception as error:  # safetensors raises its own SafetensorError (an Exception subclass)
        raise ModelLoadError(f"{path} is not a readable safetensors file ({error}); re-save the model") from error
