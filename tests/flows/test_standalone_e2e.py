"""`reelhash index` as a new user runs it: a fresh process with neither RAY_ADDRESS nor PREFECT_API_URL, so it starts
its own Ray and Prefect's temporary API (side by side, flows/services.py), starts its encoder actors before the flow,
and the flow takes them over."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

from tests.media_files import write_tiny_mp4

REPO = Path(__file__).resolve().parents[2]


def test_a_standalone_run_starts_its_services_prewarms_its_encoders_and_exits(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for index in range(3):
        write_tiny_mp4(media / f"v{index}.mp4", seconds=1.0, seed=index)
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "PREFECT_API_URL")}
    ray_tmp = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), RAY_TMPDIR=ray_tmp, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "index", str(media), "--collection", "clips", "--store",
             str(tmp_path / "store"), "--clip-arch", "reelhash-tiny", "--random-weights", "--frames-per-clip", "2",
             "--json"],
            capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["counts"]["decoded"] == 3 and result["counts"]["failed"] == 0 and result["counts"]["clips"] >= 3
    assert "Starting temporary server" in done.stderr
    assert "encoder actors, taken over from before the flow" in done.stderr
    assert "Traceback" not in done.stderr
