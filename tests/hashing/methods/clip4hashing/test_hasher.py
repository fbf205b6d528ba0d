import json

import numpy as np
import pytest
import torch

from hashing.hashers import load_hasher, make_hasher, save_hasher
from hashing.hashers.storage import ModelLoadError
from hashing.methods.clip4hashing import Clip4HashingConfig, Clip4HashingHasher, HashNet

# The paper's network on the paper's input (the per-modality variant: test_modality.py).
CONFIG = Clip4HashingConfig(n_bits=64, dim=16, hidden=32, input_transform="none", network="mlp")


def trained_like_hasher(rng: np.random.Generator) -> tuple[Clip4HashingHasher, np.ndarray]:
    torch.manual_seed(0)
    net = HashNet(CONFIG.dim, CONFIG.hidden_width, CONFIG.n_bits)
    hasher = Clip4HashingHasher.from_network(net, CONFIG, seed=3)
    training = rng.standard_normal((50, CONFIG.dim))
    hasher.freeze_thresholds(training[:25], training[25:])
    return hasher, training


def test_thresholds_are_the_midrange_of_the_training_outputs_of_both_sets():
    hasher, training = trained_like_hasher(np.random.default_rng(0))
    outputs = hasher.project(training)
    np.testing.assert_allclose(hasher.thresholds, (outputs.max(axis=0) + outputs.min(axis=0)) / 2)
    # the network runs as torch does (eval mode, no dropout) up to float precision
    net = HashNet(CONFIG.dim, CONFIG.hidden_width, CONFIG.n_bits)
    net.load_state_dict({name: torch.from_numpy(array) for name, array in hasher.weights.items()})
    scale = np.sqrt(CONFIG.dim) / np.linalg.norm(training, axis=1, keepdims=True)  # normalize_input
    with torch.no_grad():
        expected = net(torch.from_numpy((training * scale).astype(np.float32))).numpy()
    np.testing.assert_allclose(outputs, expected, atol=1e-4)


def test_single_query_hashes_as_in_a_batch():
    rng = np.random.default_rng(1)
    hasher, _ = trained_like_hasher(rng)
    queries = rng.standard_normal((300, CONFIG.dim)).astype(np.float32)
    batch = hasher.encode(queries)
    alone = np.concatenate([hasher.encode(queries[i : i + 1]) for i in range(len(queries))])
    np.testing.assert_array_equal(alone, batch)
    assert batch.shape == (300, 8) and batch.dtype == np.uint8


def test_thresholds_and_codes_survive_save_and_load(tmp_path):
    rng = np.random.default_rng(2)
    hasher, _ = trained_like_hasher(rng)
    queries = rng.standard_normal((40, CONFIG.dim)).astype(np.float16)  # fp16 features are accepted
    save_hasher(hasher, tmp_path / "model", extra={"metrics": {"t2v": {"R@1": 12.5}}})
    loaded, config = load_hasher(tmp_path / "model")
    assert isinstance(loaded, Clip4HashingHasher)
    np.testing.assert_array_equal(loaded.thresholds, hasher.thresholds)
    assert loaded.thresholds.dtype == np.float64
    np.testing.assert_array_equal(loaded.encode(queries), hasher.encode(queries))
    assert loaded.settings == CONFIG and loaded.seed == 3
    assert config["metrics"] == {"t2v": {"R@1": 12.5}}
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["method"] == "clip4hashing" and saved["clip4hashing"]["hidden"] == 32


def test_corrupt_weights_are_a_clear_load_error(tmp_path):
    hasher, _ = trained_like_hasher(np.random.default_rng(3))
    save_hasher(hasher, tmp_path / "model")
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["clip4hashing"]["hidden"] = 64  # no longer matches the stored tensors
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match"):
        load_hasher(tmp_path / "model")


def test_unready_hasher_and_fit_explain_what_to_do():
    hasher = make_hasher("clip4hashing", 64)
    with pytest.raises(RuntimeError, match="thresholds"):
        hasher.encode(np.zeros((1, 512)))
    with pytest.raises(TypeError, match="train_clip4hashing"):
        hasher.fit(np.zeros((4, 512)))
    ready, _ = trained_like_hasher(np.random.default_rng(4))
    with pytest.raises(ValueError, match="dimension 8"):
        ready.encode(np.zeros((2, 8)))


def test_default_width_follows_the_embedding_width():
    assert Clip4HashingConfig(n_bits=64, network="mlp").hidden_width == 4096
    assert Clip4HashingConfig(n_bits=64, dim=768, network="mlp").hidden_width == 6144
    assert Clip4HashingConfig(n_bits=64).hidden_width == 512  # the residual network's MLP is a correction
    with pytest.raises(ValueError):
        Clip4HashingConfig(n_bits=12)


def test_load_hasher_finds_the_method_without_an_explicit_import(tmp_path):
    # A fresh interpreter that imports only hashing.hashers: the registry must import the method by name.
    import subprocess
    import sys

    hasher, _ = trained_like_hasher(np.random.default_rng(5))
    save_hasher(hasher, tmp_path / "model")
    script = (
        "import numpy as np; from hashing.hashers import load_hasher; "
        f"h, _ = load_hasher({str(tmp_path / 'model')!r}); print(type(h).__name__, h.encode(np.ones((1, 16))).shape)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Clip4HashingHasher", "(1,", "8)"]
