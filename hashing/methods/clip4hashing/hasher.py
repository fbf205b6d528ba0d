"""A trained CLIP4Hashing model as a :class:`~hashing.hashers.Hasher` (method ``"clip4hashing"``).

State: the HashNet weights (float32, as trained) and the frozen per-bit ``thresholds`` (float64).
Encoding runs the network in numpy float64 on the CPU (eval mode: no dropout) and sets bit k when
``h_k > thresholds_k``. float64 makes a row's output independent of how many rows share the
matrix product, so one query hashes exactly as it does inside a batch, and a reloaded model
gives the same codes as the one that was saved. ``save_hasher`` / ``load_hasher`` work unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashing.bits import pack_bits
from hashing.hashers.base import Hasher, as_embedding_matrix, register_hasher, require_state
from hashing.methods.clip4hashing.config import Clip4HashingConfig
from hashing.methods.clip4hashing.minmax import binarize_np, midrange_thresholds
from hashing.methods.clip4hashing.net import PARAMETER_NAMES, HashNet

# Rows per forward chunk: bounds the two float64 [rows, hidden] activations (~130 MB at 4096 wide).
_FORWARD_CHUNK_ROWS = 2048
THRESHOLDS_KEY = "thresholds"


def network_input(embeddings: np.ndarray, config: Clip4HashingConfig) -> np.ndarray:
    """What the network sees, in the dtype given (training uses float32, encoding float64).

    With ``normalize_input`` rows are L2-normalised and scaled by sqrt(dim), i.e. unit RMS per
    coordinate: the scale PyTorch's default initialisation is designed for. Unit-norm rows (RMS
    0.044 at 512-d) leave the first layer dominated by its biases, every output points the same
    way and SGD at lr 0.01 does not leave that collapsed start (measured: loss flat for 5 epochs).
    """
    if not np.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if not config.normalize_input:
        return embeddings
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    return (unit * np.sqrt(config.dim)).astype(embeddings.dtype, copy=False)


@register_hasher
class Clip4HashingHasher(Hasher):
    """HashNet + frozen min-max thresholds. Train it with :func:`train_clip4hashing`."""

    method = "clip4hashing"

    def __init__(
        self, n_bits: int, seed: int = 0, config: Clip4HashingConfig | dict[str, Any] | None = None
    ) -> None:
        super().__init__(n_bits, seed)
        settings = Clip4HashingConfig.model_validate(config) if config is not None else Clip4HashingConfig(n_bits=n_bits)
        if settings.n_bits != self.n_bits:
            raise ValueError(f"config n_bits={settings.n_bits} does not match n_bits={self.n_bits}")
        self.settings = settings
        self.weights: dict[str, np.ndarray] | None = None
        self.thresholds: np.ndarray | None = None
        self._weights64: list[np.ndarray] = []

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_network(
        cls, net: HashNet, config: Clip4HashingConfig, thresholds: np.ndarray | None = None, seed: int = 0
    ) -> Clip4HashingHasher:
        """Copy a (trained) network's weights; thresholds can be set now or later."""
        hasher = cls(config.n_bits, seed, config)
        state = net.state_dict()
        hasher.set_weights({name: state[name].detach().cpu().numpy() for name in PARAMETER_NAMES})
        if thresholds is not None:
            hasher.set_thresholds(thresholds)
        return hasher

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        shapes = self.parameter_shapes()
        self.weights = {
            name: np.ascontiguousarray(require_state(weights, name, shapes[name]), dtype=np.float32)
            for name in PARAMETER_NAMES
        }
        self._weights64 = [self.weights[name].astype(np.float64) for name in PARAMETER_NAMES]
        self.dim = self.settings.dim

    def set_thresholds(self, thresholds: np.ndarray) -> None:
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.shape != (self.n_bits,) or not np.isfinite(thresholds).all():
            raise ValueError(f"thresholds must be {self.n_bits} finite values, got shape {thresholds.shape}")
        self.thresholds = thresholds.copy()

    def freeze_thresholds(self, *embedding_sets: np.ndarray) -> np.ndarray:
        """Set the thresholds to the per-bit mid-range of the outputs of all given sets; returns them."""
        outputs = [self.project(embeddings) for embeddings in embedding_sets]
        low = np.min([out.min(axis=0) for out in outputs], axis=0)
        high = np.max([out.max(axis=0) for out in outputs], axis=0)
        self.set_thresholds(midrange_thresholds(np.stack([low, high])))
        return self.thresholds

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        dim, hidden, bits = self.settings.dim, self.settings.hidden_width, self.n_bits
        return {
            "fc1.weight": (hidden, dim), "fc1.bias": (hidden,),
            "fc2.weight": (hidden, hidden), "fc2.bias": (hidden,),
            "fc3.weight": (bits, hidden), "fc3.bias": (bits,),
        }

    def fit(self, embeddings: np.ndarray) -> Clip4HashingHasher:
        raise TypeError(
            "CLIP4Hashing learns from video-caption pairs, not from one embedding matrix: use "
            "hashing.methods.clip4hashing.train_clip4hashing(video_emb, text_emb, config, options)"
        )

    # --- hashing ----------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self.weights is not None and self.thresholds is not None

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Continuous network outputs ``h``, ``float64 [N, n_bits]`` (before thresholding)."""
        if self.weights is None:
            raise RuntimeError("Clip4HashingHasher has no weights: train it or load a saved model")
        rows = self._prepare(embeddings)
        out = np.empty((rows.shape[0], self.n_bits))
        w1, b1, w2, b2, w3, b3 = self._weights64
        for start in range(0, rows.shape[0], _FORWARD_CHUNK_ROWS):
            chunk = rows[start : start + _FORWARD_CHUNK_ROWS]
            hidden = np.maximum(chunk @ w1.T + b1, 0.0)
            hidden = np.maximum(hidden @ w2.T + b2, 0.0)
            out[start : start + _FORWARD_CHUNK_ROWS] = hidden @ w3.T + b3
        return out

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        if not self.is_fitted:
            raise RuntimeError(
                "Clip4HashingHasher is not ready: it needs trained weights and frozen thresholds "
                "(train_clip4hashing sets both; or load a saved model)"
            )
        return pack_bits(binarize_np(self.project(embeddings), self.thresholds))

    def _bits(self, normalized: np.ndarray) -> np.ndarray:
        return binarize_np(self.project(normalized), self.thresholds)

    def _prepare(self, embeddings: np.ndarray) -> np.ndarray:
        return network_input(as_embedding_matrix(embeddings, expected_dim=self.settings.dim), self.settings)

    # --- storage ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {**super().config(), "clip4hashing": self.settings.model_dump()}

    def state(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            raise RuntimeError("Clip4HashingHasher is not trained: nothing to save")
        return {**self.weights, THRESHOLDS_KEY: self.thresholds}

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, np.ndarray]) -> Clip4HashingHasher:
        settings = config.get("clip4hashing")
        if not isinstance(settings, dict):
            raise ValueError("config has no 'clip4hashing' section: it was not saved by Clip4HashingHasher")
        try:
            hasher = cls(n_bits=int(config["n_bits"]), seed=int(config.get("seed", 0)), config=settings)
        except KeyError as error:
            raise ValueError(f"config lacks {error}") from None
        hasher.set_weights(state)
        hasher.set_thresholds(require_state(state, THRESHOLDS_KEY, (hasher.n_bits,)))
        return hasher
