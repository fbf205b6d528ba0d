"""The identity hash: bit j = [x_j > 0]. For models whose networks already output K relaxed bits.

DSMHN's streams end in a tanh hash layer with K outputs, so their "embedding" is the relaxed code
and binarising it is just its sign: no centring (that would move the learned thresholds) and no
projection. The base class L2-normalises rows first, which never changes a sign.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashing.hashers.base import Hasher, as_embedding_matrix, register_hasher, require_config_int


@register_hasher
class SignHasher(Hasher):
    """bits = embeddings > 0; ``fit`` only records (and checks) the dimension, which must equal ``n_bits``."""

    method = "sign"

    def fit(self, embeddings: np.ndarray) -> SignHasher:
        embeddings = as_embedding_matrix(embeddings)
        self._check_dim(embeddings.shape[1])
        self.dim = int(embeddings.shape[1])
        return self

    def _check_dim(self, dim: int) -> None:
        if dim != self.n_bits:
            raise ValueError(
                f"the sign hasher makes one bit per input dimension: embeddings of dimension {dim} cannot "
                f"give {self.n_bits} bits; use an encoder whose outputs are {self.n_bits}-bit relaxed codes "
                "(e.g. a DSMHN model of that length) or a projection method such as 'itq' or 'lsh'"
            )

    def _bits(self, normalized: np.ndarray) -> np.ndarray:
        return normalized > 0

    def state(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            raise RuntimeError("SignHasher is not fitted: nothing to save")
        return {}  # nothing learned; the dim lives in the config

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, np.ndarray]) -> SignHasher:
        hasher = cls(n_bits=require_config_int(config, "n_bits"), seed=require_config_int(config, "seed"))
        dim = require_config_int(config, "dim")
        hasher._check_dim(dim)
        if state:
            raise ValueError(f"a sign hasher has no weights, found tensors {sorted(state)}")
        hasher.dim = dim
        return hasher
