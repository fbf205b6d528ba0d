"""End to end through the CLI as a new user runs it: `reelhash index DIR` on a tiny directory written by
`reelhash make-sample`, with the default method and bit length (64-bit ITQ)."""

from __future__ import annotations

import json

import pytest

from flows.cli import main as cli_main
from pipeline.models import load_model
from pipeline.publish import read_current_manifest
from pipeline.sample_collection import make_sample_collection
from pipeline.store import StoreLayout

pytestmark = pytest.mark.e2e


def test_a_tiny_directory_indexes_with_the_defaults_and_is_evaluated_with_its_manifest(
        tmp_path, ray_instance, prefect_api, capsys):
    make_sample_collection(tmp_path / "media", 6, seed=4)
    store = tmp_path / "store"
    status = cli_main(["index", str(tmp_path / "media"), "--collection", "tiny", "--store", str(store),
                       "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    # 6 one-clip videos + 6 captions are 12 embeddings: too few for 64-bit ITQ, so LSH with a warning.
    assert len(result["warnings"]) == 1 and "fitted LSH instead" in result["warnings"][0]
    manifest = read_current_manifest(StoreLayout(store), "tiny")[2]
    assert load_model(StoreLayout(store), manifest["model_id"]).hasher.method == "lsh"
    assert manifest["code_bits"] == 64 and manifest["counts"]["videos"] == 6
    # The manifest at the directory's root gave the captions: the run is evaluated on its test split.
    assert result["metrics"]["eval_videos"] > 0
    assert "text_to_video.hash.R@1" in result["metrics"]
