"""SimHash (random-hyperplane LSH, Charikar 2002) on centred, L2-normalised embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from hashing.hashers.base import (
    ProjectionHasher,
    as_embedding_matrix,
    normalized_mean,
    register_hasher,
    require_config_int,
)


@register_hasher
class LshHasher(ProjectionHasher):
    """bit_j = [ (x - mean) . w_j > 0 ] with w_j ~ N(0, I) drawn from ``seed``.

    Fitting only learns the mean and the dim. Centring matters: CLIP embeddings share a large
    common component, so hyperplanes through the origin would give nearly constant bits.
    """

    method = "lsh"

    def fit(self, embeddings: np.ndarray) -> LshHasher:
        embeddings = as_embedding_matrix(embeddings)
        if embeddings.shape[0] == 0:
            raise ValueError("cannot fit on zero embeddings")
        rng = np.random.default_rng(self.seed)
        projection = rng.standard_normal((embeddings.shape[1], self.n_bits))
        self._set_parameters(normalized_mean(embeddings), projection)
        return self

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, np.ndarray]) -> LshHasher:
        hasher = cls(n_bits=require_config_int(config, "n_bits"), seed=require_config_int(config, "seed"))
        hasher._load_parameters(config, state)
        return hasher
