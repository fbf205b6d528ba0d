"""Per-modality statistics of CLIP4Hashing: the CCA transform, saved, loaded and applied on the right path."""

import json

import numpy as np
import pytest
import torch

from hashing.hashers import load_hasher, save_hasher
from hashing.hashers.base import l2_normalize
from hashing.methods.clip4hashing import Clip4HashingConfig, Clip4HashingHasher, HashNet
from hashing.methods.clip4hashing.modality import ModalityTransform, fit_cca

DIM, BITS = 16, 32
CONFIG = Clip4HashingConfig(n_bits=BITS, dim=DIM, hidden=24, cca_dims=8)


def paired(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sharing a 4-d latent, each modality with its own offset and its own strong noise directions."""
    latent = rng.standard_normal((n, 4))
    shared = rng.standard_normal((4, DIM))
    video = latent @ shared + 3.0 * rng.standard_normal((n, 2)) @ rng.standard_normal((2, DIM)) + 2.0
    text = latent @ shared + 3.0 * rng.standard_normal((n, 2)) @ rng.standard_normal((2, DIM)) - 1.0
    return video + 0.1 * rng.standard_normal((n, DIM)), text + 0.1 * rng.standard_normal((n, DIM))


def ready_hasher(seed: int = 0) -> Clip4HashingHasher:
    rng = np.random.default_rng(seed)
    video, text = paired(rng)
    transform = fit_cca(video, text, CONFIG.input_width)
    torch.manual_seed(seed)
    hasher = Clip4HashingHasher.from_network(HashNet(CONFIG.input_width, 24, BITS, residual=True), CONFIG,
                                             transform=transform)
    hasher.freeze_thresholds(video, text)
    return hasher


def test_cca_finds_the_shared_directions_and_scales_them_by_their_correlation():
    video, text = paired(np.random.default_rng(1), n=4000)
    transform = fit_cca(video, text, dims=6, regularization=1e-6)
    rho = transform.correlations
    assert np.all(np.diff(rho) <= 1e-12) and rho[3] > 0.85 and rho[4] < 0.3  # four shared directions, then noise
    projected_video = transform.apply(l2_normalize(video), "video")
    projected_text = transform.apply(l2_normalize(text), "text")
    # Each canonical variate has variance rho (unit variance scaled by sqrt(rho)); paired variates covary by rho^2.
    np.testing.assert_allclose(np.cov(projected_video.T, bias=True), np.diag(rho), atol=1e-3)
    cross = (projected_video - projected_video.mean(0)).T @ (projected_text - projected_text.mean(0)) / len(video)
    np.testing.assert_allclose(cross, np.diag(rho**2), atol=1e-3)


def test_the_same_vector_takes_the_video_or_the_text_path():
    hasher = ready_hasher()
    rows = np.random.default_rng(2).standard_normal((50, DIM))
    transform = hasher.transform
    as_video, as_text = hasher.project(rows, "video"), hasher.project(rows, "text")
    assert not np.allclose(as_video, as_text)
    net = HashNet(CONFIG.input_width, 24, BITS, residual=True)
    net.load_state_dict({name: torch.from_numpy(array) for name, array in hasher.weights.items()})
    with torch.no_grad():
        for modality, out in (("video", as_video), ("text", as_text)):
            inputs = torch.from_numpy(transform.apply(l2_normalize(rows), modality).astype(np.float32))
            np.testing.assert_allclose(out, net(inputs).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="modality='video' or modality='text'"):
        hasher.encode(rows)


def test_one_query_hashes_alone_as_in_a_batch_on_both_paths():
    hasher = ready_hasher(3)
    rows = np.random.default_rng(3).standard_normal((200, DIM)).astype(np.float32)
    for modality in ("video", "text"):
        batch = hasher.encode(rows, modality)
        alone = np.concatenate([hasher.encode(rows[i : i + 1], modality) for i in range(len(rows))])
        np.testing.assert_array_equal(alone, batch)


def test_the_transform_is_saved_and_loaded_with_the_model(tmp_path):
    hasher = ready_hasher(4)
    save_hasher(hasher, tmp_path / "model")
    loaded, _ = load_hasher(tmp_path / "model")
    for name, array in hasher.transform.state().items():
        np.testing.assert_array_equal(loaded.transform.state()[name], array)
    rows = np.random.default_rng(4).standard_normal((30, DIM))
    for modality in ("video", "text"):
        np.testing.assert_array_equal(loaded.encode(rows, modality), hasher.encode(rows, modality))
    assert loaded.settings == CONFIG


def test_a_model_saved_without_the_transform_loads_as_the_paper_network(tmp_path):
    paper = Clip4HashingConfig(n_bits=BITS, dim=DIM, hidden=24, input_transform="none", network="mlp")
    torch.manual_seed(0)
    hasher = Clip4HashingHasher.from_network(HashNet(DIM, 24, BITS), paper)
    rows = np.random.default_rng(5).standard_normal((20, DIM))
    hasher.freeze_thresholds(rows[:10], rows[10:])
    save_hasher(hasher, tmp_path / "model")
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("input_transform", "cca_dims", "cca_regularization", "network"):  # as written before they existed
        del config["clip4hashing"][key]
    config_path.write_text(json.dumps(config))
    loaded, _ = load_hasher(tmp_path / "model")
    assert loaded.settings.input_transform == "none" and loaded.settings.network == "mlp"
    np.testing.assert_array_equal(loaded.encode(rows), hasher.encode(rows))


def test_a_transform_of_the_wrong_shape_or_missing_from_the_weights_is_refused():
    hasher = ready_hasher(6)
    state = hasher.transform.state()
    with pytest.raises(ValueError, match="shape"):
        ModalityTransform.from_state(state, DIM, 5)
    with pytest.raises(ValueError, match="without its per-modality transform"):
        ModalityTransform.from_state({k: v for k, v in state.items() if k != "cca.text_projection"}, DIM, 8)
    with pytest.raises(ValueError, match="dims must be between"):
        fit_cca(np.ones((10, DIM)), np.ones((10, DIM)), dims=DIM + 1)
