"""Training CLIP4Hashing on paired embedding matrices (numpy in, a ready hasher out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from hashing.bits import pack_bits
from hashing.encoders.device import select_device
from hashing.hashers import make_hasher
from hashing.methods.clip4hashing.config import (
    CCA_REGULARIZATION_CHOICES,
    DEFAULT_CCA_REGULARIZATION,
    Clip4HashingConfig,
    Clip4HashingTrainOptions,
)
from hashing.methods.clip4hashing.hasher import Clip4HashingHasher, network_input
from hashing.methods.clip4hashing.loss import clip4hashing_loss
from hashing.methods.clip4hashing.minmax import binarize_np, midrange_thresholds, minmax_binarize
from hashing.methods.clip4hashing.modality import ModalityTransform, fit_cca
from hashing.methods.clip4hashing.net import HashNet
from hashing.methods.progress import EpochCallback
from hashing.methods.clip4hashing.retrieval import cross_modal_retrieval
from hashing.methods.clip4hashing.weighting import cross_modal_base, dynamic_weighting

EPOCH_MEANS = ("total", "intra", "inter", "consistency", "target_mean", "batch_mean", "pair_bit_agreement")
# held_out_r1 has one more entry than the others (the starting point); chosen_epoch and, with a CCA transform,
# cca_regularization (the ridge used) have one value.
HISTORY_KEYS = EPOCH_MEANS + ("lr", "held_out_r1")


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
    train_rows, held_out_rows = split_by_video(video, options.validation_fraction, rng)

    video_t = torch.from_numpy(video).to(device)
    text_t = torch.from_numpy(text).to(device)
    validation = HeldOutPairs.of(video, held_out_rows) if len(held_out_rows) else None
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    start, start_score = None, -1.0
    for ridge in ridge_candidates(config, validation is not None):  # one at a time: inputs can be large
        candidate = StartingPoint.build(video, text, train_rows, config, ridge, options.seed, device)
        score = validation.score(candidate.net, candidate.net_video, candidate.net_text, train_rows) \
            if validation is not None else -1.0
        if start is None or score > start_score:
            start, start_score = candidate, score
        del candidate
    transform, net, net_video, net_text = start.transform, start.net, start.net_video, start.net_text
    if start.ridge is not None:
        history["cca_regularization"] = [start.ridge]
    best_score, best_epoch, best_state = -1.0, 0, None
    if validation is not None:
        best_score, best_state = start_score, _copy_state(net)
        history["held_out_r1"].append(best_score)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=options.step_epoch, gamma=0.1)

    epochs = tqdm(range(options.epochs), desc=f"clip4hashing {config.n_bits}b", disable=not progress)
    for epoch in epochs:
        net.train()
        sums = dict.fromkeys(EPOCH_MEANS, 0.0)
        batches = _batches(train_rows[rng.permutation(len(train_rows))], options.batch_size)
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
        if validation is not None:
            score = validation.score(net, net_video, net_text, train_rows)
            history["held_out_r1"].append(score)
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch + 1, _copy_state(net)
        held_out = {"held_out_r1": f"{history['held_out_r1'][-1]:.1f}"} if validation is not None else {}
        epochs.set_postfix(loss=f"{history['total'][-1]:.4f}", **held_out)
        if on_epoch is not None:
            on_epoch(epoch + 1, options.epochs, {name: values[-1] for name, values in history.items() if values})

    if best_state is not None:
        net.load_state_dict(best_state)
    history["chosen_epoch"] = [float(best_epoch if validation is not None else options.epochs)]
    net.eval()
    if start.ridge is not None:  # the saved model says which ridge its transform was fitted with
        config = config.model_copy(update={"cca_regularization": start.ridge})
    hasher = Clip4HashingHasher.from_network(net.cpu(), config, seed=options.seed, transform=transform)
    # A video repeated once per caption has the same output each time: project each distinct row once.
    hasher.freeze_thresholds(np.unique(video[train_rows], axis=0), text[train_rows])
    return hasher, history


def ridge_candidates(config: Clip4HashingConfig, can_hold_out: bool) -> list[float | None]:
    """CCA ridges to start from: the configured one, or every choice when the held-out videos decide.

    Only the residual network starts at a solution that the held-out videos can judge before training (the
    paper's MLP starts at random), so the others take the default ridge. ``[None]`` without a CCA transform.
    """
    if config.input_transform != "cca":
        return [None]
    if config.cca_regularization != "held_out":
        return [float(config.cca_regularization)]
    if can_hold_out and config.network == "residual":
        return list(CCA_REGULARIZATION_CHOICES)
    return [DEFAULT_CCA_REGULARIZATION]


@dataclass
class StartingPoint:
    """A network ready to train: the input transform, the network inputs of every row, the initialised network."""

    ridge: float | None
    transform: ModalityTransform | None
    net_video: torch.Tensor
    net_text: torch.Tensor
    net: HashNet

    @classmethod
    def build(cls, video: np.ndarray, text: np.ndarray, train_rows: np.ndarray, config: Clip4HashingConfig,
              ridge: float | None, seed: int, device: torch.device) -> StartingPoint:
        # Per-modality statistics come from the training rows only, like everything else the model learns.
        transform = (fit_cca(video[train_rows], text[train_rows], config.input_width, ridge)
                     if ridge is not None else None)
        net_video, net_text = (torch.from_numpy(network_input(x, config, transform, modality)).to(device)
                               for x, modality in ((video, "video"), (text, "text")))
        torch.manual_seed(seed)  # every candidate's MLP starts from the same draw, as if it were the only one
        net = HashNet(config.input_width, config.hidden_width, config.n_bits, config.dropout,
                      residual=config.network == "residual").to(device)
        if config.network == "residual":
            start_from_linear_hashing(net, torch.cat([net_video[train_rows], net_text[train_rows]]).cpu().numpy(),
                                      seed)
        return cls(ridge, transform, net_video, net_text, net)


def split_by_video(video: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, held_out)``: ``fraction`` of the distinct videos go to held_out with all their
    captions (a caption of a training video would leak its video). Nothing is held out when fewer than 20
    videos would remain or fewer than 10 would be held out."""
    rows = np.arange(len(video))
    _, video_of_row = np.unique(video, axis=0, return_inverse=True)
    video_of_row = video_of_row.ravel()
    n_videos = int(video_of_row.max()) + 1
    n_held = int(round(fraction * n_videos))
    if n_held < 10 or n_videos - n_held < 20:
        return rows, rows[:0]
    held = np.zeros(n_videos, dtype=bool)
    held[rng.choice(n_videos, n_held, replace=False)] = True
    return rows[~held[video_of_row]], rows[held[video_of_row]]


class HeldOutPairs:
    """Held-out pairs grouped as a retrieval set: distinct videos, and each caption's video."""

    def __init__(self, rows: np.ndarray, video_rows: np.ndarray, video_of_text: np.ndarray) -> None:
        self.rows, self.video_rows, self.video_of_text = rows, video_rows, video_of_text

    @classmethod
    def of(cls, video: np.ndarray, rows: np.ndarray) -> HeldOutPairs:
        _, first, inverse = np.unique(video[rows], axis=0, return_index=True, return_inverse=True)
        return cls(rows, rows[first], inverse.ravel().astype(np.int64))

    @torch.no_grad()
    def score(self, net: HashNet, net_video: torch.Tensor, net_text: torch.Tensor, train_rows: np.ndarray) -> float:
        """T->V + V->T R@1 of the codes the network would be saved with (thresholds from the training rows)."""
        was_training = net.training
        net.eval()
        train_out = torch.cat([net(net_video[train_rows]), net(net_text[train_rows])])
        thresholds = midrange_thresholds(train_out.cpu().numpy().astype(np.float64))
        video_codes = pack_bits(binarize_np(net(net_video[self.video_rows]).cpu().numpy(), thresholds))
        text_codes = pack_bits(binarize_np(net(net_text[self.rows]).cpu().numpy(), thresholds))
        net.train(was_training)
        metrics = cross_modal_retrieval(video_codes, text_codes, self.video_of_text, "hamming")
        return float(metrics["t2v"]["R@1"] + metrics["v2t"]["R@1"])


def start_from_linear_hashing(net: HashNet, inputs: np.ndarray, seed: int) -> None:
    """Set the linear path to ITQ on the network's inputs (LSH above their width) and the MLP's output to
    zero: the untrained network then hashes like that linear method, and training can only move from there.
    Measured: trained from a random start, the MLP stayed far below the linear solution it could represent
    (docs/clip4hashing.md, "Per-modality statistics")."""
    n_bits, width = net.fc3.out_features, inputs.shape[1]
    linear = make_hasher("itq" if n_bits <= min(width, len(inputs)) else "lsh", n_bits, seed=seed).fit(inputs)
    with torch.no_grad():
        net.linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(linear.projection.T)))
        net.fc3.weight.zero_()
        net.fc3.bias.zero_()


def _copy_state(net: HashNet) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


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
    # fp16 CLIP features are cast before any product (docs/papers.md §1.9.3).
    return video.astype(np.float32), text.astype(np.float32)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one pair joins the previous one."""
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return batches
