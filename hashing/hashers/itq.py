"""Iterative Quantization (Gong & Lazebnik, CVPR 2011) on L2-normalised embeddings.

Centre, project onto the top ``n_bits`` principal directions, then learn an orthogonal rotation
``R`` that minimises the quantisation loss ``||B - V R||_F^2`` by alternating
``B = sign(V R)`` and ``R`` = the orthogonal Procrustes solution (an SVD).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashing.hashers.base import (
    ENCODE_CHUNK_ROWS,
    ProjectionHasher,
    as_embedding_matrix,
    l2_normalize,
    normalized_mean,
    register_hasher,
    require_config_int,
)


@register_hasher
class ItqHasher(ProjectionHasher):
    """PCA + learned rotation; bit_j = [ (x - mean) . w_j > 0 ] with W = P_pca R."""

    method = "itq"

    def __init__(self, n_bits: int, seed: int = 0, iterations: int = 50) -> None:
        super().__init__(n_bits, seed)
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
        self.iterations = iterations
        # Quantisation loss ||B - VR||^2 / N at the random start and after each rotation update.
        # A diagnostic of the last fit; not part of the saved state.
        self.quantization_losses: list[float] = []

    def fit(self, embeddings: np.ndarray) -> ItqHasher:
        embeddings = as_embedding_matrix(embeddings)
        n_samples, dim = embeddings.shape
        if self.n_bits > dim:
            raise ValueError(
                f"ITQ needs n_bits <= embedding dim, got n_bits={self.n_bits} > dim={dim}: PCA "
                f"has only {dim} directions. Use method 'lsh' for longer codes or n_bits <= {dim}"
            )
        if self.n_bits > n_samples:
            raise ValueError(
                f"ITQ needs at least n_bits training samples, got {n_samples} < n_bits={self.n_bits}: "
                "fit on more embeddings, use fewer bits, or use method 'lsh'"
            )
        mean = normalized_mean(embeddings)
        covariance = np.zeros((dim, dim))
        for start in range(0, n_samples, ENCODE_CHUNK_ROWS):
            centred = l2_normalize(embeddings[start : start + ENCODE_CHUNK_ROWS]) - mean
            covariance += centred.T @ centred
        pca = _top_principal_directions(covariance / n_samples, self.n_bits)
        # The rotation is learned in float32: it halves the cost of the 2 x iterations products of
        # [N, B] x [B, B], and the final parameters are stored as float32 anyway.
        projected = np.empty((n_samples, self.n_bits), dtype=np.float32)
        for start in range(0, n_samples, ENCODE_CHUNK_ROWS):
            centred = l2_normalize(embeddings[start : start + ENCODE_CHUNK_ROWS]) - mean
            projected[start : start + ENCODE_CHUNK_ROWS] = centred @ pca
        rotation = self._learn_rotation(projected)
        self._set_parameters(mean, pca @ rotation)
        return self

    def _learn_rotation(self, projected: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        rotation, _ = np.linalg.qr(rng.standard_normal((self.n_bits, self.n_bits)))
        losses = []
        for _ in range(self.iterations):
            rotated = projected @ rotation.astype(np.float32)
            codes = _signs(rotated)
            losses.append(_quantization_loss(codes, rotated))
            # Orthogonal Procrustes: maximise tr(B^T V R). With B^T V = U S W^T, R = W U^T.
            u, _, wt = np.linalg.svd((codes.T @ projected).astype(np.float64))
            rotation = wt.T @ u.T
        rotated = projected @ rotation.astype(np.float32)
        losses.append(_quantization_loss(_signs(rotated), rotated))
        self.quantization_losses = losses
        return rotation

    def config(self) -> dict[str, Any]:
        return {**super().config(), "iterations": self.iterations}

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, np.ndarray]) -> ItqHasher:
        hasher = cls(
            n_bits=require_config_int(config, "n_bits"),
            seed=require_config_int(config, "seed"),
            iterations=int(config.get("iterations", 50)),
        )
        hasher._load_parameters(config, state)
        return hasher


def _top_principal_directions(covariance: np.ndarray, n_components: int) -> np.ndarray:
    """Eigenvectors of the largest eigenvalues, ``[D, n_components]``, with a fixed sign."""
    _, vectors = np.linalg.eigh(covariance)
    top = vectors[:, ::-1][:, :n_components]
    # eigh's sign is arbitrary; make each vector's largest-magnitude entry positive so the
    # result does not depend on the LAPACK build.
    pivot = np.argmax(np.abs(top), axis=0)
    signs = np.sign(top[pivot, np.arange(n_components)])
    return top * np.where(signs == 0, 1.0, signs)


def _signs(values: np.ndarray) -> np.ndarray:
    # Same convention as encoding: a bit is 1 only for a strictly positive projection.
    return np.where(values > 0, 1.0, -1.0).astype(values.dtype)


def _quantization_loss(codes: np.ndarray, rotated: np.ndarray) -> float:
    return float(np.sum(np.square(codes - rotated), dtype=np.float64) / rotated.shape[0])
