"""Training CLIP4Hashing on paired embedding matrices (numpy in, a ready hasher out)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from hashing.encoders.device import select_device
from hashing.methods.clip4hashing.config import Clip4HashingConfig, Clip4HashingTrainOptions
from hashing.methods.clip4hashing.hasher import Clip4HashingHasher, network_input
from hashing.methods.clip4hashing.loss import clip4hashing_loss
from hashing.methods.clip4hashing.minmax import minmax_binarize
from hashing.methods.clip4hashing.net import HashNet
from hashing.methods.progress import EpochCallback
from hashing.methods.clip4hashing.weighting import cross_modal_base, dynamic_weighting

HISTORY_KEYS = ("total", "intra", "inter", "consistency", "target_mean", "batch_mean", "pair_bit_agreement", "lr")


def train_clip4hashing(
    video_emb: np.ndarray,
    text_emb: np.ndarray,
    config: Clip4HashingConfig,
    options: Clip4HashingTrainOptions | None = None,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
) -> tuple[Clip4HashingHasher, dict[str, list[float]]]:
    """Train on row-aligned pairs (row i of ``text_emb`` describes row i of ``video_emb``).

    Several captions per video are several rows repeating the video. After training, the thresholds
    are frozen to the per-bit mid-range of the training outputs of both modalities together.
    Returns the hasher and per-epoch means: loss terms, the mean target and batch mean ``mu`` of the
    weighting, the share of equal bits between a video and its caption under batch min-max codes,
    and the learning rate. ``on_epoch(epochs done, epochs, that epoch's means)`` reports progress.
    """
    options = options or Clip4HashingTrainOptions()
    video, text = _check_pairs(video_emb, text_emb, config.dim)
    device = select_device(options.device)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)

    video_t = torch.from_numpy(video).to(device)
    text_t = torch.from_numpy(text).to(device)
    net_video, net_text = (torch.from_numpy(network_input(x, config)).to(device) for x in (video, text))

    net = HashNet(config.dim, config.hidden_width, config.n_bits, config.dropout).to(device)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=options.step_epoch, gamma=0.1)
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}

    epochs = tqdm(range(options.epochs), desc=f"clip4hashing {config.n_bits}b", disable=not progress)
    for epoch in epochs:
        net.train()
        sums = dict.fromkeys(HISTORY_KEYS[:-1], 0.0)
        batches = _batches(rng.permutation(len(video)), options.batch_size)
        for rows in batches:
            index = torch.from_numpy(rows).to(device)
            base = cross_modal_base(video_t[index], text_t[index])
            if config.target == "dynamic":
                target, stats = dynamic_weighting(base, config.c)
                batch_mean = stats.mean
            else:
                target, batch_mean = base, float(base.mean())
            h_video, h_text = net(net_video[index]), net(net_text[index])
            # Batch min-max codes; they carry gradient (straight-through + pull) only when the loss uses them.
            with torch.set_grad_enabled(config.loss_on == "codes"):
                codes_video = minmax_binarize(h_video, gamma=config.gamma_quantization)
                codes_text = minmax_binarize(h_text, gamma=config.gamma_quantization)
            if config.loss_on == "codes":
                total, terms = clip4hashing_loss(codes_video, codes_text, target, config)
            else:
                total, terms = clip4hashing_loss(h_video, h_text, target, config)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            sums["total"] += float(total.detach())
            for name, value in terms.items():
                sums[name] += float(value.detach())
            sums["target_mean"] += float(target.mean())
            sums["batch_mean"] += batch_mean
            sums["pair_bit_agreement"] += float((codes_video.detach() == codes_text.detach()).float().mean())
        for name, value in sums.items():
            history[name].append(value / len(batches))
        history["lr"].append(optimizer.param_groups[0]["lr"])
        scheduler.step()
        epochs.set_postfix(loss=f"{history['total'][-1]:.4f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, options.epochs, {name: values[-1] for name, values in history.items()})

    net.eval()
    hasher = Clip4HashingHasher.from_network(net.cpu(), config, seed=options.seed)
    # A video repeated once per caption has the same output each time: project each distinct row once.
    hasher.freeze_thresholds(np.unique(video, axis=0), text)
    return hasher, history


def _check_pairs(video_emb: np.ndarray, text_emb: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    video, text = np.asarray(video_emb), np.asarray(text_emb)
    if video.ndim != 2 or text.ndim != 2:
        raise ValueError(f"video and text embeddings must be matrices [N, D], got {video.shape} and {text.shape}")
    if video.shape[0] != text.shape[0]:
        raise ValueError(
            f"video and text embeddings must be row-aligned pairs, got {video.shape[0]} video rows and "
            f"{text.shape[0]} text rows: repeat a video's row once per caption"
        )
    if video.shape[1] != dim or text.shape[1] != dim:
        raise ValueError(
            f"embeddings have width {video.shape[1]} (video) and {text.shape[1]} (text) but the config says "
            f"dim={dim}: set Clip4HashingConfig(dim=...) to the CLIP embedding width"
        )
    if video.shape[0] < 2:
        raise ValueError("need at least 2 pairs to train (the target and the min-max layer use batch statistics)")
    for name, array in (("video", video), ("text", text)):
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            raise ValueError(f"{name} embeddings must be finite floating-point values")
    # fp16 CLIP features are cast before any product (docs/methods.md §1.9.3).
    return video.astype(np.float32), text.astype(np.float32)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one pair joins the previous one."""
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return batches
