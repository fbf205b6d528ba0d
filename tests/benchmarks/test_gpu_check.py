"""benchmarks/gpu_check.sh on a machine without a CUDA GPU: a clean skip, recorded in its JSON.

Where torch sees a GPU the script runs the GPU tests and a benchmark (minutes), so this test skips there.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the check would run in full")
def test_without_a_gpu_the_check_skips_with_status_0_and_says_why(tmp_path):
    out = tmp_path / "gpu-check"
    done = subprocess.run([str(SCRIPT), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no CUDA GPU visible to torch: skipping GPU checks" in done.stdout
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["skipped"] is True and "torch.cuda.is_available() is False" in summary["reason"]
    assert summary["torch"] == torch.__version__ and summary["gpus"] == []
    assert not (out / "gpu-tests.xml").exists()  # nothing ran


def test_the_script_is_executable_bash():
    assert SCRIPT.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
