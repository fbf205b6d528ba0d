"""DSMHN configuration: the model's shape and loss weights (saved with it), and training options (not saved).

Defaults are the settings measured on the sample collection (see docs/dsmhn.md): a small SlowFast
network on letterboxed 64x64 frames, 8 per clip.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from hashing.bits import check_bits
from hashing.encoders.base import Resize
from hashing.methods.dsmhn.text_input import TextInput, uses_clip, validated_clip_encoder_config

# Choices of the network's shape, shared with streams.py (which builds them).
Pooling = Literal["avg", "max"]
VideoArch = Literal["slowfast", "vgg3d", "r3d18", "r2plus1d18"]
FastInput = Literal["rgb", "diff"]

# ImageNet statistics: the frames are ordinary RGB video and no pretrained weights are involved, so
# any fixed per-channel standardisation works; these are the values torchvision users expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LossWeights(pydantic.BaseModel):
    """Weights of the four DSMHN loss terms (see ``losses.dsmhn_loss``)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    w_similarity: float = pydantic.Field(default=1.0, ge=0, description="inter-modality pairwise likelihood")
    w_label: float = pydantic.Field(default=1.0, ge=0, description="label preservation (classifier on codes)")
    w_quantization: float = pydantic.Field(default=0.1, ge=0, description="distance of codes from ±1")
    w_balance: float = pydantic.Field(default=0.01, ge=0, description="each bit +1 on half of the batch")
    label_loss: Literal["sigmoid", "grouped"] = pydantic.Field(
        default="grouped",
        description="label preservation: 'sigmoid' = one sigmoid cross-entropy per label; 'grouped' = a softmax "
        "cross-entropy within each group of labels named 'group:value' (e.g. shape:circle, shape:star), sigmoid "
        "for labels without a group",
    )
    similarity: Literal["any", "cosine"] = pydantic.Field(
        default="any",
        description="pair similarity target: 'any' = 1 if the items share a label (the paper's line of work); "
        "'cosine' = cosine of the multi-hot label vectors (graded, rewards sharing more labels)",
    )


class DsmhnConfig(LossWeights):
    """Everything that defines a DSMHN model: saved as ``dsmhn.json`` beside the weights."""

    n_bits: int
    labels: list[str] = pydantic.Field(description="label vocabulary; order = classifier outputs")
    vocabulary: list[str] = pydantic.Field(description="text terms (words and bigrams) of the bag-of-words")
    video_stream: Literal["3d", "2d"] = pydantic.Field(
        default="3d", description="'3d': 3-D CNN over the clip; '2d': per-frame 2-D CNN + mean pooling (ablation)"
    )
    video_arch: VideoArch = pydantic.Field(
        default="slowfast",
        description="3-D backbone: 'slowfast' (a small SlowFast: wide 2-D slow pathway + thin 3-D fast pathway; CPU), "
        "'vgg3d' (one 3-D VGG at full width), or torchvision R3D-18 / R(2+1)D-18 (GPU)",
    )
    frame_size: int = pydantic.Field(default=64, ge=8, description="S: frames are S x S RGB")
    resize: Resize = pydantic.Field(
        default="fit",
        description="how decoding makes frames square: 'fit' scales the long side to S and pads (the whole frame "
        "is seen: objects near the edges of wide videos carry labels too); 'crop' keeps the centre square",
    )
    frames_per_clip: int = pydantic.Field(default=8, ge=1, description="K: frames per clip the video stream sees")
    width: int = pydantic.Field(
        default=16, ge=4, description="channels of the first block of the 2-D CNNs and the slow pathway (x2 per block)"
    )
    fast_width: int = pydantic.Field(default=8, ge=2, description="channels of the first block of the fast pathway")
    fast_scale: int = pydantic.Field(
        default=1, ge=1,
        description="the fast pathway sees frames average-pooled by this factor (2: a quarter of its cost, to pay "
        "for a sharper slow pathway; measured at 96 px on 1,500 videos, motion accuracy fell from 0.79 to 0.68)",
    )
    fast_input: FastInput = pydantic.Field(
        default="diff", description="what the fast pathway sees: its frame differences (TSN's RGB-diff) or the RGB clip"
    )
    text_hidden: int = pydantic.Field(default=512, ge=0, description="hidden units of the text MLP; 0 = linear")
    text_input: TextInput = pydantic.Field(
        default="words",
        description="what the text stream reads: 'words' (bag of words and bigrams), 'clip' (frozen CLIP text "
        "embeddings from clip_text_encoder) or 'words+clip' (both)",
    )
    clip_text_encoder: dict[str, Any] | None = pydantic.Field(
        default=None,
        description="the frozen open_clip encoder of text_input 'clip' / 'words+clip', as an OpenClipEncoderConfig "
        "(e.g. {'arch': 'ViT-B-32', 'pretrained': 'openai'} or {'arch': ..., 'checkpoint_path': ...})",
    )
    clip_text_dim: int | None = pydantic.Field(
        default=None, ge=1, description="width of the CLIP text embeddings (train_dsmhn reads it off the encoder)"
    )
    pooling: Pooling = pydantic.Field(
        default="max", description="global pooling of the small CNNs: 'max' (is the feature anywhere?) or 'avg'"
    )
    dropout: float = pydantic.Field(default=0.2, ge=0, lt=1, description="dropout before each hash layer")
    hash_norm: bool = pydantic.Field(
        default=True,
        description="batch normalisation between each hash layer's linear map and its tanh: every bit is centred "
        "on the batch, so it splits the items instead of saturating (exact-label mAP 0.36 -> 0.48 with "
        "label_loss='grouped' on 1,500 sample videos)",
    )
    w_image: float = pydantic.Field(
        default=0.5, ge=0, description="weight of the image-stream (single frame) losses trained beside the video stream"
    )
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    @pydantic.field_validator("n_bits")
    @classmethod
    def _valid_bits(cls, value: int) -> int:
        check_bits(value)
        return value

    @pydantic.field_validator("labels", "vocabulary")
    @classmethod
    def _non_empty_unique(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        if not value:
            raise ValueError(f"{info.field_name} must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} must not contain duplicates")
        return value

    @pydantic.field_validator("clip_text_encoder")
    @classmethod
    def _valid_clip_encoder(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else validated_clip_encoder_config(value)

    @pydantic.model_validator(mode="after")
    def _clip_encoder_iff_clip_input(self) -> DsmhnConfig:
        if uses_clip(self.text_input) and self.clip_text_encoder is None:
            raise ValueError(f"text_input={self.text_input!r} needs clip_text_encoder: an open_clip encoder config "
                             "with weights, e.g. {'arch': 'ViT-B-32', 'checkpoint_path': '/path/to/weights.pt'}")
        if not uses_clip(self.text_input) and (self.clip_text_encoder is not None or self.clip_text_dim is not None):
            raise ValueError("clip_text_encoder / clip_text_dim are only used with text_input 'clip' or 'words+clip'")
        return self

    @pydantic.field_validator("image_std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"image_std must be positive, got {value}")
        return value


class DsmhnTrainOptions(pydantic.BaseModel):
    """How to train (not saved with the model)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    epochs: int = pydantic.Field(default=30, ge=1)
    batch_size: int = pydantic.Field(
        default=8, ge=2,
        description="clips per step. Small batches give more steps for the same compute: on the 200-video sample "
        "collection, 8 against 32 raised exact-label mAP from 0.15 to 0.33 (t→v) in the same time",
    )
    optimizer: Literal["mixed", "adamw", "sgd"] = pydantic.Field(
        default="mixed",
        description="'mixed': AdamW (lr) for the CNN streams and the classifier, SGD (sgd_lr) for the text stream; "
        "'adamw' or 'sgd' for everything",
    )
    lr: float = pydantic.Field(default=1e-3, gt=0, description="AdamW learning rate")
    sgd_lr: float = pydantic.Field(default=0.05, gt=0, description="SGD learning rate")
    momentum: float = pydantic.Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = pydantic.Field(default=1e-4, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    device: str = "auto"
    seed: int = 0
    augment_shift: int = pydantic.Field(
        default=4, ge=0, description="random translation of each clip by up to this many pixels (same for all frames)"
    )
    augment_brightness: float = pydantic.Field(
        default=0.1, ge=0, lt=1, description="random brightness scale in [1-b, 1+b] per clip"
    )
    augment_orientation: bool = pydantic.Field(
        default=True,
        description="random flips and quarter turns of the frames the appearance networks see (the slow pathway "
        "and the image stream); the fast pathway sees each clip as it is, so 'left' stays left",
    )
    word_dropout: float = pydantic.Field(
        default=0.1, ge=0, lt=1, description="drop each bag-of-words term of a training caption with this probability"
    )
