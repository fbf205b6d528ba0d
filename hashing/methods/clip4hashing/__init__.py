"""CLIP4Hashing (Zhuo et al., ICMR 2022), reconstructed in ``docs/papers.md`` §1.

One hashing network shared by video and caption CLIP embeddings, trained to make code similarities
match a dynamically weighted cross-modal CLIP similarity target, with a min-max hashing layer.
Importing this package registers the ``"clip4hashing"`` hasher. See ``docs/clip4hashing.md``.
"""

from hashing.methods.clip4hashing.config import Clip4HashingConfig, Clip4HashingTrainOptions
from hashing.methods.clip4hashing.hasher import Clip4HashingHasher
from hashing.methods.clip4hashing.loss import clip4hashing_loss
from hashing.methods.clip4hashing.minmax import midrange_thresholds, minmax_binarize
from hashing.methods.clip4hashing.net import HashNet
from hashing.methods.clip4hashing.train import train_clip4hashing
from hashing.methods.clip4hashing.weighting import cosine_target, dynamic_weighting_target

__all__ = [
    "Clip4HashingConfig",
    "Clip4HashingHasher",
    "Clip4HashingTrainOptions",
    "HashNet",
    "clip4hashing_loss",
    "cosine_target",
    "dynamic_weighting_target",
    "midrange_thresholds",
    "minmax_binarize",
    "train_clip4hashing",
]
