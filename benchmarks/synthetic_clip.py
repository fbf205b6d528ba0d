"""Paired video and caption embeddings with CLIP-like structure ("topics" generator), for benchmarks and tests.

No pretrained CLIP can be downloaded here, so method quality is measured on generated features
that mimic what matters for cross-modal hashing (calibrated to published ViT-B/32 statistics:
paired video-caption cosine ~0.3, unpaired ~0.2, same-modality cosines ~0.5-0.7, frozen-CLIP
MSR-VTT 1k-A text-to-video R@1 ~31%):

- a shared semantic latent ``z`` (topic centre + within-topic variation, with a decaying
  spectrum) that both modalities express through the same directions — CLIP's alignment;
- a modality gap: a common "cone" direction plus one offset direction per modality;
- modality-specific structured variation (video: footage/style; text: phrasing) that has large
  variance but says nothing about the other modality;
- caption noise in the semantic latent (a caption describes part of a video), several captions
  per video, isotropic noise, and near-duplicate videos (perturbed copies of another video).

Everything is drawn from one seed; the "world" (directions, topics) is shared by all splits so
train and test come from the same embedding space, like features from one CLIP model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydantic


class SyntheticClipConfig(pydantic.BaseModel):
    """Geometry of the generated embedding space (defaults calibrated as described in the module doc)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    dim: int = pydantic.Field(default=512, ge=16)
    semantic_dim: int = pydantic.Field(default=48, ge=1, description="Dimension of the shared semantic latent.")
    n_topics: int = pydantic.Field(default=40, ge=1, description="Topic centres the semantic latents cluster around.")
    topic_spread: float = pydantic.Field(default=0.8, ge=0.0, description="Within-topic spread relative to the centres.")
    spectrum_decay: float = pydantic.Field(
        default=0.5, ge=0.0, description="Semantic direction j has scale (1 + j)^-decay (a few directions dominate)."
    )
    semantic_scale: float = pydantic.Field(default=0.16, gt=0.0, description="Norm scale of the semantic part.")
    cone: float = pydantic.Field(default=0.55, ge=0.0, description="Common direction shared by both modalities.")
    gap: float = pydantic.Field(default=0.65, ge=0.0, description="Per-modality offset (the modality gap).")
    specific_dim: int = pydantic.Field(default=32, ge=0, description="Dimension of each modality-specific subspace.")
    video_specific: float = pydantic.Field(default=0.07, ge=0.0, description="Scale of video-only variation per dim.")
    text_specific: float = pydantic.Field(default=0.07, ge=0.0, description="Scale of text-only variation per dim.")
    caption_noise: float = pydantic.Field(
        default=0.7, ge=0.0, description="Std of a caption's semantic deviation from its video, per latent dim."
    )
    caption_quality_spread: float = pydantic.Field(
        default=0.5, ge=0.0,
        description="Log-normal spread of the caption noise across captions: some captions are vague, some precise.",
    )
    noise: float = pydantic.Field(default=0.025, ge=0.0, description="Isotropic noise per dimension.")
    near_duplicate_fraction: float = pydantic.Field(default=0.1, ge=0.0, lt=1.0)
    near_duplicate_noise: float = pydantic.Field(
        default=0.3, ge=0.0, description="Latent perturbation of a near-duplicate, relative to the latent spread."
    )
    seed: int = 0


@dataclass(frozen=True)
class PairedEmbeddings:
    """Row-aligned pairs: ``text[i]`` is a caption of ``video[i]``; ``video_index[i]`` names the video."""

    video: np.ndarray  # float32 [N, D], L2-normalised
    text: np.ndarray  # float32 [N, D], L2-normalised
    video_index: np.ndarray  # int64 [N]: rows with the same value share one video

    @property
    def n_videos(self) -> int:
        return int(self.video_index.max()) + 1 if len(self.video_index) else 0


class SyntheticClipWorld:
    """A fixed synthetic embedding space; :meth:`sample` draws videos and captions from it."""

    def __init__(self, config: SyntheticClipConfig | None = None) -> None:
        self.config = config or SyntheticClipConfig()
        cfg = self.config
        needed = cfg.semantic_dim + 2 * cfg.specific_dim + 3
        if needed > cfg.dim:
            raise ValueError(f"dim={cfg.dim} is too small for semantic_dim + 2 * specific_dim + 3 = {needed}")
        rng = np.random.default_rng(cfg.seed)
        basis, _ = np.linalg.qr(rng.standard_normal((cfg.dim, needed)))
        columns = iter(np.split(basis, np.cumsum([cfg.semantic_dim, cfg.specific_dim, cfg.specific_dim, 1, 1]), axis=1))
        self.semantic_basis = next(columns)  # [D, L]
        self.video_basis = next(columns)  # [D, specific_dim]
        self.text_basis = next(columns)
        self.cone_direction = next(columns)[:, 0]
        self.video_gap = next(columns)[:, 0]
        self.text_gap = next(columns)[:, 0]
        self.spectrum = (1.0 + np.arange(cfg.semantic_dim)) ** -cfg.spectrum_decay
        self.topics = rng.standard_normal((cfg.n_topics, cfg.semantic_dim))

    def sample(self, n_videos: int, captions_per_video: int = 1, seed: int = 1) -> PairedEmbeddings:
        """``n_videos`` videos with ``captions_per_video`` captions each (rows grouped by video)."""
        if n_videos < 1 or captions_per_video < 1:
            raise ValueError("need at least one video and one caption per video")
        cfg = self.config
        rng = np.random.default_rng(seed)
        topic = rng.integers(cfg.n_topics, size=n_videos)
        latent = self.topics[topic] + cfg.topic_spread * rng.standard_normal((n_videos, cfg.semantic_dim))
        footage = rng.standard_normal((n_videos, cfg.specific_dim))
        # Near-duplicates: copies of an earlier (original) video, slightly perturbed in content and footage.
        n_duplicates = int(round(cfg.near_duplicate_fraction * n_videos))
        if n_duplicates and n_videos > 1:
            copies = rng.choice(np.arange(1, n_videos), size=min(n_duplicates, n_videos - 1), replace=False)
            sources = np.array([rng.integers(copy) for copy in copies])
            latent[copies] = latent[sources] + cfg.near_duplicate_noise * cfg.topic_spread * rng.standard_normal(
                (len(copies), cfg.semantic_dim)
            )
            footage[copies] = footage[sources] + cfg.near_duplicate_noise * rng.standard_normal(
                (len(copies), cfg.specific_dim)
            )
        video = self._express(latent, self.video_gap, self.video_basis, cfg.video_specific * footage, rng)

        video_index = np.repeat(np.arange(n_videos), captions_per_video)
        vagueness = np.exp(cfg.caption_quality_spread * rng.standard_normal((len(video_index), 1))
                           - 0.5 * cfg.caption_quality_spread**2)
        caption_latent = latent[video_index] + cfg.caption_noise * vagueness * rng.standard_normal(
            (len(video_index), cfg.semantic_dim)
        )
        phrasing = cfg.text_specific * rng.standard_normal((len(video_index), cfg.specific_dim))
        text = self._express(caption_latent, self.text_gap, self.text_basis, phrasing, rng)
        return PairedEmbeddings(video=video[video_index], text=text, video_index=video_index.astype(np.int64))

    def _express(
        self, latent: np.ndarray, gap: np.ndarray, specific_basis: np.ndarray, specific: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        cfg = self.config
        rows = (
            cfg.cone * self.cone_direction
            + cfg.gap * gap
            + cfg.semantic_scale * (latent * self.spectrum) @ self.semantic_basis.T
            + specific @ specific_basis.T
            + cfg.noise * rng.standard_normal((latent.shape[0], cfg.dim))
        )
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float32)
