import json

import numpy as np
import pytest
import safetensors.numpy

from hashing.hashers import ItqHasher, LshHasher, ModelLoadError, load_hasher, make_hasher, save_hasher


@pytest.fixture
def embeddings():
    return np.random.default_rng(0).standard_normal((400, 48)).astype(np.float32)


@pytest.fixture
def saved_model(tmp_path, embeddings):
    hasher = ItqHasher(32, seed=2, iterations=10).fit(embeddings)
    directory = save_hasher(hasher, tmp_path / "model", extra={"encoder": {"arch": "ViT-B-32"}, "metrics": {"R@1": 1.5}})
    return hasher, directory


@pytest.mark.parametrize("method", ["lsh", "itq"])
def test_save_load_gives_identical_codes(tmp_path, embeddings, method):
    hasher = make_hasher(method, 32, seed=4).fit(embeddings)
    directory = save_hasher(hasher, tmp_path / method, extra={"encoder_id": "tiny"})
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "weights.safetensors"]
    loaded, config = load_hasher(directory)
    assert type(loaded) is type(hasher)
    assert loaded.config() == hasher.config()
    assert np.array_equal(loaded.encode(embeddings), hasher.encode(embeddings))
    assert config["encoder_id"] == "tiny" and config["format_version"] == 1 and config["method"] == method


def test_config_json_content(saved_model):
    hasher, directory = saved_model
    config = json.loads((directory / "config.json").read_text())
    assert config == {
        "format_version": 1,
        "method": "itq",
        "n_bits": 32,
        "dim": 48,
        "seed": 2,
        "iterations": 10,
        "encoder": {"arch": "ViT-B-32"},
        "metrics": {"R@1": 1.5},
    }
    weights = safetensors.numpy.load_file(directory / "weights.safetensors")
    assert weights["projection"].shape == (48, 32) and weights["mean"].shape == (48,)


def test_save_rejects_unfitted_clashing_and_unserialisable(tmp_path, embeddings):
    with pytest.raises(ValueError, match="not fitted"):
        save_hasher(LshHasher(32), tmp_path / "a")
    hasher = LshHasher(32).fit(embeddings)
    with pytest.raises(ValueError, match="clash"):
        save_hasher(hasher, tmp_path / "b", extra={"n_bits": 64})
    with pytest.raises(ValueError, match="JSON"):
        save_hasher(hasher, tmp_path / "c", extra={"when": object()})
    assert not (tmp_path / "c" / "config.json").exists()


def test_resave_overwrites_and_leaves_no_temporary_files(tmp_path, embeddings):
    directory = tmp_path / "model"
    save_hasher(LshHasher(32, seed=0).fit(embeddings), directory)
    save_hasher(LshHasher(32, seed=1).fit(embeddings), directory)
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "weights.safetensors"]
    assert load_hasher(directory)[0].seed == 1


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_hasher(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["config.json", "weights.safetensors"])
def test_missing_file(saved_model, name):
    _, directory = saved_model
    (directory / name).unlink()
    with pytest.raises(ModelLoadError, match=f"{name} is missing"):
        load_hasher(directory)


def test_bad_json(saved_model):
    _, directory = saved_model
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json is not valid JSON"):
        load_hasher(directory)


def test_unknown_method_and_version(saved_model):
    _, directory = saved_model
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "method": "mystery"}))
    with pytest.raises(ModelLoadError, match="unknown hash method 'mystery'.*itq.*lsh"):
        load_hasher(directory)
    (directory / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ModelLoadError, match="format_version"):
        load_hasher(directory)


@pytest.mark.parametrize("corruption", ["truncate", "garbage"])
def test_corrupt_weights(saved_model, corruption):
    _, directory = saved_model
    path = directory / "weights.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if corruption == "truncate" else b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="weights.safetensors is not a readable safetensors file"):
        load_hasher(directory)


def test_shape_mismatch_between_config_and_weights(saved_model):
    _, directory = saved_model
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "n_bits": 64}))
    with pytest.raises(ModelLoadError, match="does not match config.json.*projection"):
        load_hasher(directory)


def test_missing_tensor(saved_model):
    _, directory = saved_model
    safetensors.numpy.save_file({"mean": np.zeros(48, np.float32)}, directory / "weights.safetensors")
    with pytest.raises(ModelLoadError, match="missing the tensor 'projection'"):
        load_hasher(directory)


def test_load_finds_a_method_module_the_caller_never_imported(tmp_path):
    # A fresh interpreter has only imported hashing.hashers; the "sign" method lives in its own
    # module and must be found by name when its saved model is loaded.
    import subprocess
    import sys

    hasher = make_hasher("sign", 16).fit(np.random.default_rng(0).standard_normal((4, 16)))
    directory = save_hasher(hasher, tmp_path / "sign")
    script = (
        "import sys; from hashing.hashers import load_hasher; "
        "assert 'hashing.hashers.sign' not in sys.modules; "
        f"print(type(load_hasher({str(directory)!r})[0]).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "SignHasher"
