import json

import numpy as np
import pytest

from flows.cli import main
from flows.eval_features import EvalFeaturesConfig, eval_features, load_embedding_matrix
from synthetic_clip import SyntheticClipConfig, SyntheticClipWorld

WORLD = SyntheticClipWorld(SyntheticClipConfig(dim=32, semantic_dim=8, specific_dim=4, n_topics=4, seed=2))


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("features")
    train, test = WORLD.sample(60, captions_per_video=2, seed=1), WORLD.sample(40, captions_per_video=2, seed=2)
    for name, array in {"tv": train.video, "tt": train.text, "v": test.video, "t": test.text}.items():
        np.save(directory / f"{name}.npy", array)
    return directory


def test_cli_prints_json_for_every_method_and_bit_length(feature_files, capsys, tmp_path):
    d = feature_files
    code = main(["eval-features", "--video", str(d / "v.npy"), "--text", str(d / "t.npy"),
                 "--train-video", str(d / "tv.npy"), "--train-text", str(d / "tt.npy"), "--bits", "16,64",
                 "--epochs", "1", "--set", "hidden=32", "--device", "cpu", "--save-models", str(tmp_path / "m"),
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_eval_videos"] == 40 and result["n_eval_captions"] == 80  # duplicated video rows grouped
    assert result["transductive"] is False and result["warnings"] == []
    rows = {(row["method"], row["bits"]): row for row in result["results"]}
    assert set(rows) == {(m, b) for m in ("clip4hashing", "lsh", "itq") for b in (16, 64)}
    assert rows[("itq", 64)]["t2v"] is None and "n/a" in rows[("itq", 64)]["note"]  # 64 bits > 32 dims
    assert 0.0 <= rows[("clip4hashing", 16)]["t2v"]["R@1"] <= 100.0 and rows[("lsh", 64)]["v2t"]["MdR"] >= 1.0
    assert set(result["float"]) == {"t2v", "v2t"}
    assert (tmp_path / "m" / "clip4hashing-16b" / "weights.safetensors").is_file()


def test_without_training_matrices_the_run_is_flagged_transductive(feature_files, capsys):
    d = feature_files
    code = main(["eval-features", "--video", str(d / "v.npy"), "--text", str(d / "t.npy"), "--bits", "16",
                 "--methods", "lsh", "--ablations"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| lsh | 16 |" in out and "| float cosine |" in out and "WARNING" in out and "ties:" in out


def test_ablation_rows(feature_files):
    d = feature_files
    config = EvalFeaturesConfig(video=d / "v.npy", text=d / "t.npy", train_video=d / "tv.npy",
                                train_text=d / "tt.npy", bits=[16], methods=["clip4hashing"], ablations=True,
                                clip4hashing={"hidden": 32}, train={"epochs": 1, "device": "cpu"})
    methods = [row["method"] for row in eval_features(config)["results"]]
    assert methods == ["clip4hashing", "clip4hashing/sign-at-zero", "clip4hashing/eval-set-minmax",
                       "clip4hashing/cosine-target"]


def test_mismatched_or_bad_files_are_clear_errors(feature_files, tmp_path, capsys):
    d = feature_files
    np.save(tmp_path / "short.npy", np.zeros((3, 32), dtype=np.float32))
    assert main(["eval-features", "--video", str(d / "v.npy"), "--text", str(tmp_path / "short.npy")]) == 2
    assert "row i of the text matrix" in capsys.readouterr().err
    np.save(tmp_path / "ints.npy", np.zeros((3, 32), dtype=np.int64))
    with pytest.raises(ValueError, match="float matrix"):
        load_embedding_matrix(tmp_path / "ints.npy", "--video")
    with pytest.raises(ValueError, match="both --train-video and --train-text"):
        EvalFeaturesConfig(video=d / "v.npy", text=d / "t.npy", train_video=d / "tv.npy")
