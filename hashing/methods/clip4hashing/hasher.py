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
from hashing.hashers.base import Hasher, Modality, as_embedding_matrix, l2_normalize, register_hasher, require_state
from hashing.methods.clip4hashing.config import Clip4HashingConfig
from hashing.methods.clip4hashing.minmax import binarize_np, midrange_thresholds
from hashing.methods.clip4hashing.modality import ModalityTransform
from hashing.methods.clip4hashing.net import LINEAR_PATH, HashNet, parameter_names

# Rows per forward chunk: bounds the two float64 [rows, hidden] activations (~130 MB at 4096 wide).
_FORWARD_CHUNK_ROWS = 2048
THRESHOLDS_KEY = "thresholds"


def network_input(embeddings: np.ndarray, config: Clip4HashingConfig, transform: ModalityTransform | None = None,
                  modality: Modality | None = None) -> np.ndarray:
    """What the network sees, in the dtype given (training uses float32, encoding float64).

    With the CCA transform: the rows of one modality in the shared space (``modality`` says which path).
    Otherwise, with ``normalize_input``, rows are L2-normalised and scaled by sqrt(dim), i.e. unit RMS per
    coordinate: the scale PyTorch's default initialisation is designed for. Unit-norm rows (RMS
    0.044 at 512-d) leave the first layer dominated by its biases, every output points the same
    way and SGD at lr 0.01 does not leave that collapsed start (measured: loss flat for 5 epochs).
    """
    if not np.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if config.input_transform == "cca":
        if transform is None:
            raise RuntimeError("this CLIP4Hashing model has no per-modality transform: train it or load a saved model")
        if modality is None:
            raise ValueError("this CLIP4Hashing model hashes videos and captions through different paths: "
                             "pass modality='video' or modality='text'")
        return transform.apply(l2_normalize(embeddings), modality).astype(embeddings.dtype, copy=False)
    if not config.normalize_input:
        return embeddings
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    return (unit * np.sqrt(config.dim)).astype(embeddings.dtype, copy=False)


@register_hasher
class Clip4HashingHasher(Hasher):
    """Per-modality transform (optional) + HashNet + frozen min-max thresholds. Train it with
    :func:`train_clip4hashing`."""

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
        self.transform: ModalityTransform | None = None
        self._weights64: dict[str, np.ndarray] = {}

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_network(
        cls, net: HashNet, config: Clip4HashingConfig, thresholds: np.ndarray | None = None, seed: int = 0,
        transform: ModalityTransform | None = None,
    ) -> Clip4HashingHasher:
        """Copy a (trained) network's weights and the input transform; thresholds can be set now or later."""
        hasher = cls(config.n_bits, seed, config)
        if transform is not None:
            hasher.set_transform(transform)
        state = net.state_dict()
        hasher.set_weights({name: state[name].detach().cpu().numpy() for name in parameter_names(config.network)})
        if thresholds is not None:
            hasher.set_thresholds(thresholds)
        return hasher

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        shapes = self.parameter_shapes()
        self.weights = {
            name: np.ascontiguousarray(require_state(weights, name, shapes[name]), dtype=np.float32)
            for name in parameter_names(self.settings.network)
        }
        self._weights64 = {name: value.astype(np.float64) for name, value in self.weights.items()}
        self.dim = self.settings.dim

    def set_transform(self, transform: ModalityTransform) -> None:
        if self.settings.input_transform != "cca":
            raise ValueError("this model's config has input_transform='none': it takes no per-modality transform")
        expected = (self.settings.dim, self.settings.input_width)
        if transform.video_projection.shape != expected or transform.text_projection.shape != expected:
            raise ValueError(f"the transform's projections must have shape {expected}, got "
                             f"{transform.video_projection.shape} and {transform.text_projection.shape}")
        self.transform = transform

    def set_thresholds(self, thresholds: np.ndarray) -> None:
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.shape != (self.n_bits,) or not np.isfinite(thresholds).all():
            raise ValueError(f"thresholds must be {self.n_bits} finite values, got shape {thresholds.shape}")
        self.thresholds = thresholds.copy()

    def freeze_thresholds(self, video: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Set the thresholds to the per-bit mid-range of the outputs of both modalities' sets; returns them."""
        outputs = [self.project(video, "video"), self.project(text, "text")]
        low = np.min([out.min(axis=0) for out in outputs], axis=0)
        high = np.max([out.max(axis=0) for out in outputs], axis=0)
        self.set_thresholds(midrange_thresholds(np.stack([low, high])))
        return self.thresholds

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        width, hidden, bits = self.settings.input_width, self.settings.hidden_width, self.n_bits
        return {
            "fc1.weight": (hidden, width), "fc1.bias": (hidden,),
            "fc2.weight": (hidden, hidden), "fc2.bias": (hidden,),
            "fc3.weight": (bits, hidden), "fc3.bias": (bits,),
            LINEAR_PATH: (bits, width),
        }

    def fit(self, embeddings: np.ndarray) -> Clip4HashingHasher:
        raise TypeError(
            "CLIP4Hashing learns from video-caption pairs, not from one embedding matrix: use "
            "hashing.methods.clip4hashing.train_clip4hashing(video_emb, text_emb, config, options)"
        )

    # --- hashing ----------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return (self.weights is not None and self.thresholds is not None
                and (self.transform is not None or self.settings.input_transform == "none"))

    def project(self, embeddings: np.ndarray, modality: Modality | None = None) -> np.ndarray:
        """Continuous network outputs ``h``, ``float64 [N, n_bits]`` (before thresholding)."""
        if self.weights is None:
            raise RuntimeError("Clip4HashingHasher has no weights: train it or load a saved model")
        rows = network_input(as_embedding_matrix(embeddings, expected_dim=self.settings.dim).astype(np.float64),
                             self.settings, self.transform, modality)
        out = np.empty((rows.shape[0], self.n_bits))
        w = self._weights64
        for start in range(0, rows.shape[0], _FORWARD_CHUNK_ROWS):
            chunk = rows[start : start + _FORWARD_CHUNK_ROWS]
            hidden = np.maximum(chunk @ w["fc1.weight"].T + w["fc1.bias"], 0.0)
            hidden = np.maximum(hidden @ w["fc2.weight"].T + w["fc2.bias"], 0.0)
            result = hidden @ w["fc3.weight"].T + w["fc3.bias"]
            if LINEAR_PATH in w:
                result += chunk @ w[LINEAR_PATH].T
            out[start : start + _FORWARD_CHUNK_ROWS] = result
        return out

    def encode(self, embeddings: np.ndarray, modality: Modality | None = None) -> np.ndarray:
        if not self.is_fitted:
            raise RuntimeError(
                "Clip4HashingHasher is not ready: it needs trained weights and frozen thresholds "
                "(train_clip4hashing sets both; or load a saved model)"
            )
        return pack_bits(binarize_np(self.project(embeddings, modality), self.thresholds))

    def _bits(self, normalized: np.ndarray) -> np.ndarray:
        return binarize_np(self.project(normalized), self.thresholds)

    # --- storage ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {**super().config(), "clip4hashing": self.settings.model_dump()}

    def state(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            raise RuntimeError("Clip4HashingHasher is not trained: nothing to save")
        transform = self.transform.state() if self.transform is not None else {}
        return {**self.weights, THRESHOLDS_KEY: self.thresholds, **transform}

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, np.ndarray]) -> Clip4HashingHasher:
        settings = config.get("clip4hashing")
        if not isinstance(settings, dict):
            raise ValueError("config has no 'clip4hashing' section: it was not saved by Clip4HashingHasher")
        # A model saved before the per-modality transform and the residual network existed is the paper's.
        settings = {"input_transform": "none", "network": "mlp", **settings}
        try:
            hasher = cls(n_bits=int(config["n_bits"]), seed=int(config.get("seed", 0)), config=settings)
        except KeyError as error:
            raise ValueError(f"config lacks {error}") from None
        if hasher.settings.input_transform == "cca":
            hasher.set_transform(ModalityTransform.from_state(state, hasher.settings.dim, hasher.settings.input_width))
        hasher.set_weights(state)
        hasher.set_thresholds(require_state(state, THRESHOLDS_KEY, (hasher.n_bits,)))
        return hasher
