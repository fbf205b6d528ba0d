"""End to end: the quality gate also guards the runs that change the model (`--refit`, `--model`, `rehash`).

The published version's metrics are inflated in place (as if it had scored perfectly on the same evaluation
set), so any new model looks like a regression; the gate must refuse with exit status 4 and leave CURRENT alone,
and `--force` must publish. Real Prefect API, real Ray, real decord on 6 generated videos.
"""

from __future__ import annotations

import json

import pytest

from flows.cli import main as cli_main
from flows.train_hasher import train_hasher
from pipeline.publish import read_current_manifest
from pipeline.sample_collection import make_sample_collection
from pipeline.store import StoreLayout, atomic_write_json
from pipeline.training.base import TrainRunConfig

pytestmark = pytest.mark.e2e

GATE = ["--quality-min-videos", "1"]


def _inflate(layout: StoreLayout) -> None:
    """Make the published version look perfect on the same evaluation set."""
    _, version_dir, manifest = read_current_manifest(layout, "main")
    perfect = {name: {key: (100.0 if key.endswith(("R@1", "R@5", "R@10")) else 1.0 if key.endswith("mAP@all")
                            else value) for key, value in metrics.items()} for name, metrics in manifest["metrics"].items()}
    assert all("eval_set_key" in metrics for metrics in perfect.values())
    atomic_write_json(version_dir / "manifest.json", {**manifest, "metrics": perfect})


def test_a_model_change_is_gated_unless_forced(tmp_path, ray_instance, prefect_api, capsys):
    manifest = make_sample_collection(tmp_path / "videos", 6, seed=2)
    store = tmp_path / "store"
    layout = StoreLayout(store)
    index = ["index", str(manifest), "--collection", "sample", "--index", "main", "--store", str(store),
             "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2", "--method", "lsh"]
    assert cli_main(index) == 0
    first_model = read_current_manifest(layout, "main")[2]["model_id"]
    _inflate(layout)

    # --refit with another method and bit length: a new model, refused by the gate.
    capsys.readouterr()
    assert cli_main(index + ["--refit", "--method", "itq", "--bits", "16"] + GATE) == 4
    err = capsys.readouterr().err
    assert "quality gate: not publishing a new version of 'main' (model " in err and "--force" in err
    assert "Traceback" not in err
    version, _, current = read_current_manifest(layout, "main")
    assert version == 1 and current["model_id"] == first_model

    # rehash with a trained model: gated the same way.
    trained = train_hasher(TrainRunConfig(method="clip4hashing", collection="sample", store=str(store), bits=[16],
                                          encoder={"arch": "reelhash-tiny", "allow_random_weights": True},
                                          sampling={"frames_per_clip": 2}, options={"epochs": 2, "hidden": 64}))
    new_model = trained["models"][0]["model_id"]
    capsys.readouterr()
    assert cli_main(["rehash", "--model", new_model, "--index", "main", "--store", str(store)] + GATE) == 4
    assert "quality gate" in capsys.readouterr().err
    assert read_current_manifest(layout, "main")[0] == 1

    # --force publishes, with the new model pinned.
    assert cli_main(["rehash", "--model", new_model, "--index", "main", "--store", str(store), "--force", "--json"]
                    + GATE) == 0
    assert json.loads(capsys.readouterr().out)["published"]["version"] == 2
    assert read_current_manifest(layout, "main")[2]["model_id"] == new_model
