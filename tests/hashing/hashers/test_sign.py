import numpy as np
import pytest

from hashing.bits import pack_bits
from hashing.hashers import ModelLoadError, load_hasher, make_hasher, save_hasher
from hashing.hashers.sign import SignHasher


def test_bits_are_the_signs_without_centring():
    # Every row is mostly positive: a centring hasher would flip bits, the sign hasher must not.
    x = np.array([[0.9, 0.1, -0.2, 0.5] * 4, [0.8, -0.3, 0.4, 0.0] * 4], dtype=np.float32)
    hasher = SignHasher(16).fit(x)
    assert hasher.dim == 16
    assert np.array_equal(hasher.encode(x), pack_bits(x > 0))


def test_scaling_does_not_change_codes():
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 32))
    hasher = make_hasher("sign", 32).fit(x)
    assert np.array_equal(hasher.encode(x), hasher.encode(x * 37.5))


def test_dimension_must_equal_n_bits():
    with pytest.raises(ValueError, match="one bit per input dimension"):
        SignHasher(16).fit(np.ones((3, 32)))
    hasher = SignHasher(16).fit(np.ones((3, 16)))
    with pytest.raises(ValueError, match="dimension 32"):
        hasher.encode(np.ones((3, 32)))


def test_save_load_round_trip(tmp_path):
    x = np.random.default_rng(1).standard_normal((20, 24))
    hasher = SignHasher(24, seed=3).fit(x)
    directory = save_hasher(hasher, tmp_path / "sign", extra={"encoder": {"kind": "dsmhn"}})
    loaded, config = load_hasher(directory)
    assert isinstance(loaded, SignHasher) and config["method"] == "sign" and config["dim"] == 24
    assert np.array_equal(loaded.encode(x), hasher.encode(x))


def test_loading_a_config_with_the_wrong_dim_fails(tmp_path):
    directory = save_hasher(SignHasher(16).fit(np.ones((2, 16))), tmp_path / "sign")
    text = (directory / "config.json").read_text().replace('"dim": 16', '"dim": 8')
    (directory / "config.json").write_text(text)
    with pytest.raises(ModelLoadError, match="one bit per input dimension"):
        load_hasher(directory)
