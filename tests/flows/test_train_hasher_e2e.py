"""End to end: index a tiny sample collection with a random CLIP (catalog + baseline features) → the
`train_hasher` flow trains DSMHN on real Ray under a real Prefect API → `index --model` hashes the collection
with the trained streams → `reelhash search` by text and by example returns its videos."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.cli import main as cli_main
from flows.config import IndexRunConfig
from flows.index_collection import index_collection
from flows.train_hasher import train_hasher
from pipeline.models import load_model, resolve_model_id
from pipeline.store import StoreLayout
from pipeline.training.base import TrainRunConfig

pytestmark = pytest.mark.e2e

N_VIDEOS = 12
SAMPLING = {"clip_seconds": 4.0, "frames_per_clip": 4}
FAST = {"epochs": 15, "batch_size": 8, "width": 8, "text_hidden": 64, "frame_size": 32,
        "augment_shift": 0, "augment_brightness": 0.0, "word_dropout": 0.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_instance, prefect_api):
    from pipeline.sample_collection import make_sample_collection

    root = tmp_path_factory.mktemp("train_e2e")
    videos = make_sample_collection(root / "videos", N_VIDEOS, seed=4)
    manifest = _with_an_image(videos)
    store = root / "store"
    baseline = index_collection(IndexRunConfig(
        source=str(manifest), collection="tiny", store=str(store), sampling=SAMPLING, method="itq", bits=16,
        encoder={"arch": "reelhash-tiny", "allow_random_weights": True}, publish=False))
    result = train_hasher(TrainRunConfig(method="dsmhn", collection="tiny", store=str(store), bits=[16],
                                         sampling=SAMPLING, options=FAST, ray={"progress_bars": False}))
    indexed = index_collection(IndexRunConfig(source=str(manifest), collection="tiny", index="dsmhn",
                                              store=str(store), model=result["models"][0]["model_id"]))
    return store, manifest, baseline, result, indexed


def _with_an_image(video_manifest: Path) -> Path:
    """The sample manifest plus one png (a red square on grey) with a caption and labels: a one-frame medium."""
    pixels = np.full((90, 120, 3), 90, np.uint8)
    pixels[30:60, 45:75] = (220, 30, 30)
    Image.fromarray(pixels).save(video_manifest.parent / "still.png")
    rows = [{k: r[k] for k in ("uri", "caption", "labels", "split")} for r in pq.read_table(video_manifest).to_pylist()]
    rows.append({"uri": "still.png", "caption": "a red square that stays still", "split": "train",
                 "labels": ["shape:square", "colour:red", "motion:still"]})
    path = video_manifest.parent / "with_image.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_train_hasher_saves_a_model_and_writes_a_report(trained):
    store, _, _, result, _ = trained
    (model,) = result["models"]
    layout = StoreLayout(store)
    assert model["model_id"] == resolve_model_id(layout, "dsmhn-tiny-16b") and model["n_bits"] == 16
    assert len(model["history"]["total"]) == FAST["epochs"]
    assert model["history"]["total"][-1] < model["history"]["total"][0]
    stored = load_model(layout, model["model_id"])
    assert stored.hasher.method == "sign" and stored.encoder_config.kind == "dsmhn"
    assert stored.digest.startswith(model["model_id"][-8:])
    assert (layout.model_dir(model["model_id"]) / "streams" / "dsmhn.safetensors").is_file()
    report = Path(result["report_dir"])
    text = (report / "report.md").read_text()
    assert (report / "loss-16b.png").exists() and "loss-16b.png" in text
    assert "2-D per-frame stream" in text and "3-D video stream" in text  # the ablation ran
    assert "ITQ on random-weight CLIP reelhash-tiny" in text  # baseline from the first index run's features
    saved = json.loads((report / "metrics.json").read_text())
    extra = saved["extra"]
    assert extra["ablation_bits"] == 16
    # Metrics are real numbers in range, measured on the held-out videos of the split the flow chose.
    ablation = extra["ablation_2d"]
    assert 0.0 < ablation["text_to_video.mAP_exact"] <= 1.0 and 0.0 < ablation["video_to_text.mAP_exact"] <= 1.0
    test_videos = saved["models"][0]["metrics"]
    assert {"text_to_video", "video_to_text"} <= {key.split(".")[0] for key in _keys(test_videos)}
    for key, value in _numbers(test_videos):
        if "mAP" in key or "R@" in key:
            assert 0.0 <= value <= (100.0 if "R@" in key else 1.0), (key, value)
    baseline = extra["itq_baselines"]["ITQ on random-weight CLIP reelhash-tiny features"]["metrics"]
    assert {"text_to_video", "video_to_text"} <= {key.split(".")[0] for key in _keys(baseline)}
    held_out = stored.config["training"]["test_videos"]
    assert held_out >= 1 and stored.config["training"]["train_videos"] + held_out == N_VIDEOS + 1


def _keys(metrics: dict, prefix: str = "") -> list[str]:
    return [key for key, _ in _numbers(metrics, prefix)]


def _numbers(metrics: dict, prefix: str = "") -> list[tuple[str, float]]:
    out = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            out += _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((f"{prefix}{key}", float(value)))
    return out


def test_training_progress_is_a_prefect_artifact_that_reaches_100_percent(trained):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def epoch_artifacts():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dsmhn-tiny-16b-epochs"])))

    artifacts = asyncio.run(epoch_artifacts())
    assert artifacts and {a.type for a in artifacts} == {"progress"}
    assert max(float(a.data) for a in artifacts) == 100.0


def test_index_with_the_trained_model_hashes_with_its_streams(trained):
    store, _, _, _, indexed = trained
    assert indexed["model_id"] == resolve_model_id(StoreLayout(store), "dsmhn-tiny-16b")
    assert indexed["counts"]["videos_indexed"] == N_VIDEOS + 1 and indexed["published"]["published"]
    assert indexed["metrics"]["text_to_video.hash.mAP@all"] > 0


def test_search_by_text_and_by_example_returns_collection_videos(trained, capsys):
    store, manifest, _, _, _ = trained
    rows = pq.read_table(manifest).to_pylist()
    uris = {r["uri"] for r in rows}
    capsys.readouterr()
    assert cli_main(["search", "--store", str(store), "--index", "dsmhn", rows[0]["caption"], "--k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3 and {r["uri"] for r in results} <= uris
    video = Path(manifest).parent / rows[1]["uri"]
    assert cli_main(["search", "--store", str(store), "--index", "dsmhn", "--like", str(video), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    # The file is hashed like the archive, so its own video is at distance 0 (16-bit codes may tie with others).
    assert results[0]["distance"] == 0
    assert rows[1]["uri"] in {r["uri"] for r in results if r["distance"] == 0}
    # The image went through the same catalog → decode → DSMHN encoder → index path as the videos.
    assert cli_main(["search", "--store", str(store), "--index", "dsmhn", "--like", str(Path(manifest).parent / "still.png"),
                     "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert "still.png" in {r["uri"] for r in results if r["distance"] == 0}
