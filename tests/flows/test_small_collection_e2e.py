"""End to end through the CLI as a new user runs it: `reelhash index DIR` on a tiny directory written by
`reelhash make-sample`, with the default method and bit length (64-bit ITQ)."""

from __future__ import annotations

import asyncio
import base64
import json
import re

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


def test_what_the_prefect_ui_shows_for_a_clean_run(tmp_path, ray_instance, prefect_api, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    make_sample_collection(tmp_path / "media", 4, seed=8)
    status = cli_main(["index", str(tmp_path / "media"), "--collection", "ui-check", "--store", str(tmp_path / "s"),
                       "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2", "--method", "lsh",
                       "--bits", "16", "--json"])
    assert status == 0
    capsys.readouterr()
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs reach the API in batches: send what is queued before reading them back

    async def read():
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["ui-check-report", "ui-check-failures"])))
            run_ids = {a.flow_run_id for a in artifacts}
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(run_ids))))
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(run_ids))))
            return artifacts, runs, logs

    artifacts, runs, logs = asyncio.run(read())
    assert len(runs) == 1
    by_key = {a.key: a for a in artifacts}
    # The report's plots are inlined: no relative image link for the UI to miss, every image a decodable PNG.
    report = by_key["ui-check-report"].data
    assert not re.search(r"!\[[^\]]*\]\((?!data:)[^)]*\)", report)
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", report)
    assert images and all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    # No failures: a sentence, not a table with a placeholder row.
    failures = by_key["ui-check-failures"]
    assert failures.type == "markdown" and "No file of **ui-check** failed: all 4 files were indexed" in failures.data
    # The extract task's log says what it did; a clean run logs nothing at ERROR level.
    messages = [log.message for log in logs]
    assert any(re.match(r"ui-check: decoded and encoded 4 videos \(\d+ clips, 0 failed\)", m) for m in messages)
    assert [log.message for log in logs if log.level >= 40] == []


def test_a_run_that_fails_is_one_line_with_status_1(tmp_path, ray_instance, prefect_api, capsys):
    (tmp_path / "empty").mkdir()
    status = cli_main(["index", str(tmp_path / "empty"), "--collection", "nothing", "--store", str(tmp_path / "s"),
                       "--clip-arch", "reelhash-tiny", "--random-weights"])
    err = capsys.readouterr().err
    assert status == 1
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: no media files found in {tmp_path / 'empty'}"]
    assert "Traceback" not in err
