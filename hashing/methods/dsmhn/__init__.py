"""DSMHN (Jin, Li, Tang, TNNLS 2023): supervised cross-modal hashing with modality-specific streams.

A 3-D CNN (video), a 2-D CNN (images) and an MLP on bag-of-words and/or frozen CLIP features (text) each end in a tanh hash layer
to K bits; they are trained jointly with inter-modality pairwise likelihood, label preservation
(a classifier shared by all streams), quantisation and bit-balance losses. What was chosen where
the paper is silent: ``docs/dsmhn.md``.
"""

from hashing.methods.dsmhn.config import DsmhnConfig, DsmhnTrainOptions, LossWeights
from hashing.methods.dsmhn.losses import (
    bit_balance_loss,
    dsmhn_loss,
    label_preservation_loss,
    label_similarity,
    pairwise_likelihood_loss,
    quantization_loss,
)
from hashing.methods.dsmhn.model import DsmhnFeatureModel, DsmhnModel
from hashing.methods.dsmhn.train import train_dsmhn, train_dsmhn_features
from hashing.methods.dsmhn.vocab import bag_of_words, build_vocabulary, tokenize

__all__ = [
    "DsmhnConfig",
    "DsmhnFeatureModel",
    "DsmhnModel",
    "DsmhnTrainOptions",
    "LossWeights",
    "bag_of_words",
    "bit_balance_loss",
    "build_vocabulary",
    "dsmhn_loss",
    "label_preservation_loss",
    "label_similarity",
    "pairwise_likelihood_loss",
    "quantization_loss",
    "tokenize",
    "train_dsmhn",
    "train_dsmhn_features",
]
