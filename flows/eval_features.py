"""`reelhash eval-features`: CLIP4Hashing vs LSH / ITQ vs float cosine on given embedding matrices.

For users who have real paired CLIP features (e.g. MSR-VTT 1k-A): row i of the text matrix is a
caption of row i of the video matrix. The methods are trained on the training matrices (or, if none
are given, on the evaluation pairs themselves — flagged, because the numbers are then optimistic)
and scored on the evaluation pairs with text->video and video->text R@1/5/10 and MdR. A plain
function (no Prefect, no Ray): the work is one process of numpy/torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from hashing.methods.clip4hashing.comparison import (
    BENCHMARK_BITS,
    ComparisonOptions,
    MethodName,
    compare_methods,
    group_pairs,
)
from hashing.methods.clip4hashing.config import Clip4HashingTrainOptions

TRANSDUCTIVE_WARNING = (
    "WARNING: no --train-video/--train-text given, so every method is trained on the evaluation pairs themselves; "
    "CLIP4Hashing then has seen the pairs it is scored on and its numbers are optimistic. Give a disjoint training "
    "set (e.g. MSR-VTT Training-9K features) for a fair comparison."
)


class EvalFeaturesConfig(pydantic.BaseModel):
    """One `reelhash eval-features` run."""

    model_config = pydantic.ConfigDict(extra="forbid")

    video: Path
    text: Path
    train_video: Path | None = None
    train_text: Path | None = None
    bits: list[int] = pydantic.Field(default_factory=lambda: list(BENCHMARK_BITS))
    methods: list[MethodName] = pydantic.Field(default_factory=lambda: ["clip4hashing", "lsh", "itq"])
    ablations: bool = False
    clip4hashing: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Clip4HashingConfig fields (hidden, c, dropout, ...), e.g. from --set."
    )
    train: Clip4HashingTrainOptions = Clip4HashingTrainOptions()
    save_dir: Path | None = None

    @pydantic.model_validator(mode="after")
    def _train_pair_given_together(self) -> EvalFeaturesConfig:
        if (self.train_video is None) != (self.train_text is None):
            raise ValueError("give both --train-video and --train-text, or neither")
        return self


def load_embedding_matrix(path: Path, name: str) -> np.ndarray:
    """A float matrix ``[N, D]`` from a ``.npy`` file, as float32; errors say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{name}: {path} is not a plain .npy array ({error}); save it with numpy.save") from error
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: {path} must hold a float matrix [N, D], got {array.dtype} with shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: {path} contains NaN or infinite values")
    return array.astype(np.float32, copy=False)


def eval_features(config: EvalFeaturesConfig, log: Callable[[str], None] | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Train and score every method and bit length; returns the comparison dict (see ``compare_methods``).

    ``progress``: a bar per CLIP4Hashing training run on stderr."""
    log = log or (lambda message: None)
    video = load_embedding_matrix(config.video, "--video")
    text = load_embedding_matrix(config.text, "--text")
    _check_pairing(video, text, "--video", "--text")
    if config.train_video is not None:
        train_video = load_embedding_matrix(config.train_video, "--train-video")
        train_text = load_embedding_matrix(config.train_text, "--train-text")
        _check_pairing(train_video, train_text, "--train-video", "--train-text")
        if train_video.shape[1] != video.shape[1]:
            raise ValueError(
                f"training embeddings have width {train_video.shape[1]} but evaluation embeddings {video.shape[1]}: "
                "use features from the same CLIP model"
            )
        warnings: list[str] = []
    else:
        train_video, train_text = video, text
        warnings = [TRANSDUCTIVE_WARNING]
    for warning in warnings:
        log(warning)
    evaluation = group_pairs(video, text)
    options = ComparisonOptions(
        bits=config.bits, methods=config.methods, ablations=config.ablations,
        clip4hashing=config.clip4hashing, train=config.train, seed=config.train.seed,
    )
    log(f"{len(train_video)} training pairs; evaluation: {len(evaluation.videos)} videos, "
        f"{len(evaluation.texts)} captions, {video.shape[1]}-d")
    result = compare_methods(train_video, train_text, evaluation, options, log=log, save_dir=config.save_dir,
                             progress=progress)
    result["warnings"] = warnings
    result["transductive"] = config.train_video is None
    return result


def _check_pairing(video: np.ndarray, text: np.ndarray, video_name: str, text_name: str) -> None:
    if video.shape != text.shape:
        raise ValueError(
            f"{video_name} has shape {video.shape} but {text_name} {text.shape}: row i of the text matrix must be a "
            "caption of row i of the video matrix (repeat a video's row once per caption)"
        )
    if len(video) < 2:
        raise ValueError(f"{video_name} needs at least 2 pairs")
