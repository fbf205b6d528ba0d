"""Training DSMHN: on decoded clips + captions + labels, or on precomputed feature vectors (Wiki).

Both entry points share one optimisation loop and the same ``losses.dsmhn_loss``; they differ only in
how a batch of rows becomes paired (vision codes, text codes). Training is deterministic for a seed
on the CPU and leaves the caller's global RNG state untouched (``torch.random.fork_rng``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hashing.bits import check_bits
from hashing.encoders.device import select_device
from hashing.methods.dsmhn.augment import random_orientation, shift_and_brighten, word_dropout
from hashing.methods.dsmhn.config import DsmhnConfig, DsmhnTrainOptions, LossWeights
from hashing.methods.dsmhn.losses import LabelGroups, LossWeightsLike, dsmhn_loss, label_groups
from hashing.methods.dsmhn.model import DsmhnFeatureModel, DsmhnModel
from hashing.methods.dsmhn.text_input import build_clip_text_encoder, uses_clip
from hashing.methods.progress import EpochCallback

TERMS = ("similarity", "label", "quantization", "balance")

# One pair of code matrices for the loss: (weight, vision codes, text codes). A batch may yield several
# (video-text and image-text).
CodePairs = list[tuple[float, torch.Tensor, torch.Tensor]]


def train_dsmhn(clips: np.ndarray, captions: Sequence[str] | Sequence[Sequence[str]], labels: np.ndarray,
                config: DsmhnConfig, options: DsmhnTrainOptions, progress: bool = False,
                on_epoch: EpochCallback | None = None) -> tuple[DsmhnModel, dict[str, list[float]]]:
    """Train the video, image and text streams jointly; returns the model (eval mode, on the training device)
    and the per-epoch history ("total", "similarity", "label", "quantization", "balance", and "image"
    when the image stream is trained).

    Rows are clips: several clips of one video are separate rows sharing its caption and labels.
    ``captions[i]`` is one caption, or a list of alternative captions of row i (one is drawn per
    step, so paraphrases all train the text stream). The image stream learns from one random frame
    of each clip against the same caption (skipped when ``config.w_image == 0``).
    """
    clips, labels, alternatives = _check_clip_inputs(clips, captions, labels, config)
    device = select_device(options.device)
    unique_captions = sorted({c for row in alternatives for c in row})
    caption_index = {c: i for i, c in enumerate(unique_captions)}
    row_captions = [np.array([caption_index[c] for c in row]) for row in alternatives]
    clip_encoder = build_clip_text_encoder(config.clip_text_encoder) if uses_clip(config.text_input) else None
    if clip_encoder is not None and config.clip_text_dim != clip_encoder.embed_dim:
        config = config.model_copy(update={"clip_text_dim": clip_encoder.embed_dim})

    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(options.seed)
        model = DsmhnModel(config, clip_text_encoder=clip_encoder).to(device)
        # The text inputs of every distinct caption, once: the frozen CLIP (if any) runs here and never again.
        text_inputs = model.text_to_tensor(unique_captions)
        n_words = model.caption_features.n_words
        labels_t = torch.from_numpy(labels).to(device)

        def batch_codes(rows: np.ndarray, rng: np.random.Generator) -> CodePairs:
            pixels = shift_and_brighten(model.clip_pixels(clips[rows]), options, rng)
            pixels = model.normalize_pixels(pixels)
            text_rows = [row_captions[r][rng.integers(len(row_captions[r]))] for r in rows]
            text = word_dropout(text_inputs[text_rows], options.word_dropout, n_words)
            text_codes = model.text(text)
            orient = (lambda frames: random_orientation(frames, rng)) if options.augment_orientation else None
            if config.video_stream == "3d":
                video_codes = model.video(pixels, slow_transform=orient)
            else:
                video_codes = model.video(pixels)
            pairs: CodePairs = [(1.0, video_codes, text_codes)]
            if config.w_image > 0:
                frame = torch.from_numpy(rng.integers(pixels.shape[2], size=len(rows))).to(device)
                frames = pixels[torch.arange(len(rows), device=device), :, frame]
                pairs.append((config.w_image, model.image(frames if orient is None else orient(frames)), text_codes))
            return pairs

        history = _optimize(model, labels_t, batch_codes, config, options, progress, desc="DSMHN",
                            groups=label_groups(config.labels), on_epoch=on_epoch)
    return model.eval(), history


def train_dsmhn_features(x_image: np.ndarray, x_text: np.ndarray, labels: np.ndarray, n_bits: int,
                         options: DsmhnTrainOptions, weights: LossWeights | None = None, hidden: int = 1024,
                         dropout: float = 0.2, progress: bool = False, on_epoch: EpochCallback | None = None,
                         ) -> tuple[DsmhnFeatureModel, dict[str, list[float]]]:
    """DSMHN with MLP streams on paired feature vectors ``[N, Dx]`` / ``[N, Dt]`` and labels ``[N, C]``.

    Same losses and loop as ``train_dsmhn``; the model's ``encode_image_features`` /
    ``encode_text_features`` give relaxed codes (take ``> 0`` for bits).
    """
    check_bits(n_bits)
    x_image, x_text = np.asarray(x_image, np.float32), np.asarray(x_text, np.float32)
    labels = _check_labels(labels, len(x_image))
    if x_image.ndim != 2 or x_text.ndim != 2 or len(x_text) != len(x_image):
        raise ValueError(f"features must be [N, Dx] and [N, Dt] with the same N, got {x_image.shape} and {x_text.shape}")
    weights = weights or LossWeights()
    device = select_device(options.device)
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(options.seed)
        model = DsmhnFeatureModel(x_image.shape[1], x_text.shape[1], labels.shape[1], n_bits, hidden, dropout)
        model.set_standardization(x_image, x_text)
        model = model.to(device)
        image_t, text_t = model.image_input(x_image), model.text_input(x_text)
        labels_t = torch.from_numpy(labels).to(device)

        def batch_codes(rows: np.ndarray, rng: np.random.Generator) -> CodePairs:
            index = torch.from_numpy(rows).to(device)
            return [(1.0, model.image(image_t[index]), model.text(text_t[index]))]

        history = _optimize(model, labels_t, batch_codes, weights, options, progress, desc="DSMHN features",
                            on_epoch=on_epoch)
    return model.eval(), history


# --- the shared loop ----------------------------------------------------------------------------


def _optimize(model: nn.Module, labels: torch.Tensor, batch_codes: Callable[[np.ndarray, np.random.Generator], CodePairs],
              weights: LossWeightsLike, options: DsmhnTrainOptions, progress: bool, desc: str,
              groups: LabelGroups = (), on_epoch: EpochCallback | None = None) -> dict[str, list[float]]:
    n_rows = labels.shape[0]
    rng = np.random.default_rng(options.seed)
    batches = _batch_starts(n_rows, options.batch_size)
    optimizers = _optimizers(model, options)
    total_steps = options.epochs * len(batches)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total_steps, options.lr_schedule)) for optimizer in optimizers]
    history: dict[str, list[float]] = {}
    bar = tqdm(range(options.epochs), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = rng.permutation(n_rows)
        sums: dict[str, float] = {}
        for start, stop in batches:
            rows = order[start:stop]
            pairs = batch_codes(rows, rng)
            total = torch.zeros((), device=labels.device)
            step_terms: dict[str, float] = {}
            for index, (weight, vision, text) in enumerate(pairs):
                loss, terms = dsmhn_loss(vision, text, labels[rows], model.classifier, weights, groups)
                total = total + weight * loss
                if index == 0:
                    step_terms.update(terms)
                else:  # the image stream: one summary number
                    step_terms["image"] = step_terms.get("image", 0.0) + float(loss.detach())
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            total.backward()
            for optimizer, scheduler in zip(optimizers, schedulers):
                optimizer.step()
                scheduler.step()
            if not math.isfinite(float(total.detach())):
                raise FloatingPointError("DSMHN training diverged (loss is not finite): lower lr")
            step_terms["total"] = float(total.detach())
            for name, value in step_terms.items():
                sums[name] = sums.get(name, 0.0) + value * len(rows)
        for name in ("total", *TERMS, "image"):
            if name in sums:
                history.setdefault(name, []).append(sums[name] / n_rows)
        bar.set_postfix(loss=f"{history['total'][-1]:.4f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, options.epochs, {name: values[-1] for name, values in history.items()})
    return history


def _optimizers(model: nn.Module, options: DsmhnTrainOptions) -> list[torch.optim.Optimizer]:
    """One optimizer per parameter group of ``options.optimizer``.

    Why mixed: AdamW trains the CNNs several times better than SGD in the same epochs (held-out colour
    accuracy of the video stream 0.99 against 0.51 on the 1,500-video sample). On the bag-of-words
    text stream, Adam's per-parameter steps give rare words updates as large as frequent ones and the
    stream memorises captions (held-out text accuracy 0.79-0.89 against 0.97-1.00 with SGD).
    """
    def sgd(params) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=options.sgd_lr, momentum=options.momentum, weight_decay=options.weight_decay)

    def adamw(params) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)

    if options.optimizer == "sgd":
        return [sgd(model.parameters())]
    if options.optimizer == "adamw":
        return [adamw(model.parameters())]
    text = list(model.text.parameters())
    text_ids = {id(p) for p in text}
    return [adamw([p for p in model.parameters() if id(p) not in text_ids]), sgd(text)]


def _batch_starts(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch boundaries; a last batch of a single row joins the previous one (pairwise terms need two)."""
    bounds = [(start, min(start + batch_size, n_rows)) for start in range(0, n_rows, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
        bounds[-2:] = [(bounds[-2][0], n_rows)]
    return bounds


def _lr_factor(step: int, total_steps: int, schedule: str) -> float:
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


# --- input checks -------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, n_rows: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] != n_rows:
        raise ValueError(f"labels must be multi-hot [N, C] with N={n_rows} rows, got shape {labels.shape}")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be multi-hot (bool or 0/1)")
    return labels.astype(np.float32)


def _check_clip_inputs(clips: np.ndarray, captions, labels: np.ndarray,
                       config: DsmhnConfig) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    size = config.frame_size
    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[2:] != (size, size, 3):
        raise ValueError(f"clips must be uint8 [N, K, S, S, 3] with S={size} (config.frame_size), got "
                         f"{getattr(clips, 'dtype', type(clips))} {getattr(clips, 'shape', '')}")
    n_rows = len(clips)
    if n_rows < 2:
        raise ValueError(f"need at least 2 training clips, got {n_rows}")
    if isinstance(captions, str) or len(captions) != n_rows:
        raise ValueError(f"need one caption (or list of captions) per clip: {n_rows} clips, "
                         f"{'a string' if isinstance(captions, str) else len(captions)} captions")
    alternatives = [[row] if isinstance(row, str) else list(row) for row in captions]
    if any(not row or not all(isinstance(c, str) for c in row) for row in alternatives):
        raise ValueError("each caption entry must be a string or a non-empty list of strings")
    labels = _check_labels(labels, n_rows)
    if labels.shape[1] != len(config.labels):
        raise ValueError(f"labels have {labels.shape[1]} columns but config.labels has {len(config.labels)} entries")
    return clips, labels, alternatives
