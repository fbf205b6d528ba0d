"""Wrong encoder options fail the real `reelhash` process at once: exit status 2, one line, no traceback, and
neither Prefect nor Ray (nor torch) imported or started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "open_clip", "ray", "prefect")
# flows.cli.main, as the `reelhash` script runs it, then the heavy modules the process imported, on stdout.
CLI = ("import json, sys\nfrom flows.cli import main\nstatus = main(sys.argv[1:])\n"
       f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\nsys.exit(status)\n")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reelhash(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with Prefect's and Ray's state directories and the HF cache inside tmp_path."""
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    environment.update(PREFECT_HOME=str(tmp_path / "prefect-home"), RAY_TMPDIR=str(tmp_path / "ray-tmp"),
                       HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")
    environment.update(env or {})
    environment = {key: value for key, value in environment.items() if value is not None}
    return subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT, env=environment)


def assert_failed_before_start_up(done: subprocess.CompletedProcess, tmp_path: Path, fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert fragment in lines[0]
    assert "Traceback" not in done.stderr and "Starting temporary server" not in done.stderr + done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no torch, open_clip, Ray or Prefect imported
    assert not (tmp_path / "prefect-home").exists() and not (tmp_path / "ray-tmp").exists()
    assert not (tmp_path / "store").exists()


@pytest.fixture
def source(tmp_path) -> str:
    (tmp_path / "media").mkdir()
    return str(tmp_path / "media")


@pytest.mark.parametrize("options, fragment", [
    (["--clip-pretrained", "bogus"],
     "'bogus' is not an open_clip pretrained tag for arch 'ViT-B-32' (known tags: openai"),
    (["--clip-checkpoint", "{tmp}/missing.pt"], "CLIP checkpoint {tmp}/missing.pt does not exist"),
    (["--clip-arch", "ViT-Z-9", "--random-weights"], "unknown open_clip architecture 'ViT-Z-9'"),
    (["--random-weights", "--device", "tpu"], "unknown device 'tpu'"),
    (["--clip-arch", "reelhash-tiny"], "no weights configured for open_clip arch 'reelhash-tiny'"),
])
def test_index_with_wrong_encoder_options(tmp_path, source, options, fragment):
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    done = reelhash(tmp_path, "index", source, "--collection", "c", "--store", str(tmp_path / "store"), *options)
    assert_failed_before_start_up(done, tmp_path, fragment.replace("{tmp}", str(tmp_path)))


def test_offline_a_tag_not_in_the_cache_is_the_cache_error(tmp_path, source):
    done = reelhash(tmp_path, "index", source, "--collection", "c", "--store", str(tmp_path / "store"),
                    "--clip-pretrained", "openai")
    assert_failed_before_start_up(done, tmp_path, "weights for open_clip arch 'ViT-B-32' tag 'openai' are not in the "
                                                  "local cache and HF_HUB_OFFLINE is set")
    assert "timm/vit_base_patch32_clip_224.openai" in done.stderr


def test_online_an_unreachable_hub_is_a_clear_error(tmp_path, source):
    done = reelhash(tmp_path, "index", source, "--collection", "c", "--store", str(tmp_path / "store"),
                    "--clip-pretrained", "openai",
                    env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"})
    assert_failed_before_start_up(done, tmp_path, "are not in the local cache, and the Hugging Face hub could not be "
                                                  "reached to download them")
    for hint in ("HF_HUB_OFFLINE=1", "--clip-checkpoint", "--random-weights"):
        assert hint in done.stderr


@pytest.mark.parametrize("argv", [
    ["nightly", "--index", "i", "--clip-pretrained", "bogus"],
    ["train", "--method", "clip4hashing", "--collection", "c", "--clip-pretrained", "bogus"],
    ["train", "--method", "dsmhn", "--collection", "c", "--set", "text_input=clip", "--clip-pretrained", "bogus"],
    ["demo", "--dir", "{tmp}/demo", "--clip-pretrained", "bogus"],
])
def test_every_command_that_builds_the_encoder_checks_it_first(tmp_path, argv):
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    done = reelhash(tmp_path, *argv, "--store", str(tmp_path / "store"))
    assert_failed_before_start_up(done, tmp_path, "'bogus' is not an open_clip pretrained tag")
    assert not (tmp_path / "demo").exists()
