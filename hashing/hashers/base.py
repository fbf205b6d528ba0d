"""The hasher interface and a registry of hash methods.

A hasher maps float embeddings ``[N, D]`` (CLIP space, either modality) to packed codes
``uint8 [N, n_bits/8]``. Its whole fitted state is a dict of numpy arrays plus a JSON-able
config, so it can be saved as ``config.json`` + ``weights.safetensors`` (see ``storage.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from hashing.bits import check_bits, pack_bits

# Rows encoded per matrix product; bounds the float64 temporaries of encode()
# (16384 rows x 2048 bits x 8 bytes = 256 MiB at the longest codes).
ENCODE_CHUNK_ROWS = 16384

HasherT = TypeVar("HasherT", bound="Hasher")
# Which side of the archive a row of embeddings comes from: clips are "video", captions and text queries "text".
Modality = Literal["video", "text"]


class Hasher(ABC):
    """Base class: fit on float embeddings, encode them into packed bits."""

    method: ClassVar[str]

    def __init__(self, n_bits: int, seed: int = 0) -> None:
        check_bits(n_bits)
        self.n_bits = int(n_bits)
        self.seed = int(seed)
        self.dim: int | None = None

    @property
    def is_fitted(self) -> bool:
        return self.dim is not None

    @abstractmethod
    def fit(self: HasherT, embeddings: np.ndarray) -> HasherT:
        """Learn the hash function from float embeddings ``[N, D]``; returns ``self``."""

    def encode(self, embeddings: np.ndarray, modality: Modality | None = None) -> np.ndarray:
        """Packed codes ``uint8 [N, n_bits/8]`` for float embeddings ``[N, D]``.

        ``modality`` says whether the rows are videos (clips) or captions (queries). A hasher with
        per-modality statistics (CLIP4Hashing's CCA transform) needs it; the others hash both alike.
        """
        if not self.is_fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit(embeddings) or load a saved model"
            )
        embeddings = as_embedding_matrix(embeddings, expected_dim=self.dim)
        out = np.empty((embeddings.shape[0], self.n_bits // 8), dtype=np.uint8)
        for start in range(0, embeddings.shape[0], ENCODE_CHUNK_ROWS):
            stop = start + ENCODE_CHUNK_ROWS
            rows = l2_normalize(embeddings[start:stop])
            out[start:stop] = pack_bits(self._bits(rows))
        return out

    @abstractmethod
    def _bits(self, normalized: np.ndarray) -> np.ndarray:
        """Boolean bits ``[n, n_bits]`` for L2-normalised float64 rows."""

    def config(self) -> dict[str, Any]:
        """JSON-able description: method, n_bits, dim, seed and method options."""
        return {"method": self.method, "n_bits": self.n_bits, "dim": self.dim, "seed": self.seed}

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The fitted arrays (what goes into ``weights.safetensors``)."""

    @classmethod
    @abstractmethod
    def from_state(cls: type[HasherT], config: dict[str, Any], state: dict[str, np.ndarray]) -> HasherT:
        """Rebuild a fitted hasher; raises ``ValueError`` when config and state disagree."""


def as_embedding_matrix(embeddings: np.ndarray, expected_dim: int | None = None) -> np.ndarray:
    """Validate a float matrix ``[N, D]`` and return it as float64 (exact for fp16/fp32 input)."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [N, D], got shape {embeddings.shape}")
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    if expected_dim is not None and embeddings.shape[1] != expected_dim:
        raise ValueError(
            f"embeddings have dimension {embeddings.shape[1]} but the hasher was fitted on "
            f"dimension {expected_dim}: use features from the same encoder the model was trained on"
        )
    return embeddings.astype(np.float64, copy=False)


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float64; all-zero rows stay zero."""
    rows = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(rows).all():
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def require_state(
    state: dict[str, np.ndarray], name: str, shape: tuple[int, ...]
) -> np.ndarray:
    """Fetch ``state[name]`` and check its shape; ``ValueError`` says what is wrong."""
    if name not in state:
        raise ValueError(f"weights are missing the tensor {name!r} (found: {sorted(state)})")
    array = np.asarray(state[name])
    if array.shape != shape:
        raise ValueError(f"tensor {name!r} has shape {array.shape}, expected {shape} from the config")
    return array


def require_config_int(config: dict[str, Any], key: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"config field {key!r} must be an integer, got {value!r}")
    return value


# --- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Hasher]] = {}
# Where hash methods that are not imported yet are looked for, in this order.
_PLUGIN_MODULES = ("hashing.hashers.{method}", "hashing.methods.{method}")


def register_hasher(cls: type[HasherT]) -> type[HasherT]:
    """Class decorator: make ``cls`` available to ``make_hasher`` and ``load_hasher``."""
    method = getattr(cls, "method", None)
    if not isinstance(method, str) or not method:
        raise TypeError(f"{cls.__name__} must define a non-empty class attribute `method`")
    existing = _REGISTRY.get(method)
    if existing is not None and existing is not cls:
        raise ValueError(f"hash method {method!r} is already registered by {existing.__name__}")
    _REGISTRY[method] = cls
    return cls


def hasher_class(method: str) -> type[Hasher]:
    """The class registered for ``method``.

    A method that is not registered yet is imported on first use from ``hashing.hashers.<method>``
    or ``hashing.methods.<method>`` (whose import registers it), so loading a saved model does
    not depend on what the caller happened to import.
    """
    if method not in _REGISTRY and method.isidentifier() and not method.startswith("_"):
        for module_name in _PLUGIN_MODULES:
            if method in _REGISTRY:
                break
            if importlib.util.find_spec(module_name.format(method=method)) is not None:
                importlib.import_module(module_name.format(method=method))
    try:
        return _REGISTRY[method]
    except KeyError:
        raise ValueError(
            f"unknown hash method {method!r}; known methods: {', '.join(known_methods())}"
        ) from None


def known_methods() -> list[str]:
    return sorted(_REGISTRY)


def make_hasher(method: str, n_bits: int, seed: int = 0, **options: Any) -> Hasher:
    """An unfitted hasher of the given method; ``options`` go to its constructor."""
    return hasher_class(method)(n_bits=n_bits, seed=seed, **options)


class ProjectionHasher(Hasher):
    """A hasher of the form ``bits = (x - mean) @ projection > 0`` on L2-normalised ``x``.

    Parameters are stored as float32 (that is what is saved) and used in float64, so a fitted
    and a reloaded hasher give the same codes, and one row encodes as it does inside a batch.
    """

    def __init__(self, n_bits: int, seed: int = 0) -> None:
        super().__init__(n_bits, seed)
        self.mean: np.ndarray | None = None
        self.projection: np.ndarray | None = None
        self._mean64: np.ndarray | None = None
        self._projection64: np.ndarray | None = None

    def _set_parameters(self, mean: np.ndarray, projection: np.ndarray) -> None:
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.projection = np.ascontiguousarray(projection, dtype=np.float32)
        self._mean64 = self.mean.astype(np.float64)
        self._projection64 = self.projection.astype(np.float64)
        self.dim = int(self.mean.shape[0])

    def _bits(self, normalized: np.ndarray) -> np.ndarray:
        return (normalized - self._mean64) @ self._projection64 > 0

    def state(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: nothing to save")
        return {"mean": self.mean, "projection": self.projection}

    def _load_parameters(self, config: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        dim = require_config_int(config, "dim")
        self._set_parameters(
            require_state(state, "mean", (dim,)),
            require_state(state, "projection", (dim, self.n_bits)),
        )


def normalized_mean(embeddings: np.ndarray, chunk_rows: int = ENCODE_CHUNK_ROWS) -> np.ndarray:
    """Mean of the L2-normalised rows, computed in chunks."""
    total = np.zeros(embeddings.shape[1])
    for start in range(0, embeddings.shape[0], chunk_rows):
        total += l2_normalize(embeddings[start : start + chunk_rows]).sum(axis=0)
    return total / embeddings.shape[0]
