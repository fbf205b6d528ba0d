"""Pretrained weights as open_clip users expect: the cache, else a download into it, never with HF_HUB_OFFLINE=1.

The network is a local stand-in for the Hugging Face hub (``FakeHub``), reached through ``HF_ENDPOINT`` in a
subprocess (huggingface_hub reads it at import), or no network at all (the download functions replaced by ones
that fail the test).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from hashing.encoders import weights
from hashing.encoders.open_clip_encoder import build_encoder, register_model_configs
from hashing.encoders.weights import OpenClipEncoderConfig, WeightsUnavailableError

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY = "reelhash-tiny"
TAG = "hubtest"  # a pretrained tag of reelhash-tiny that only these tests know
REPO_ID = "reelhash/tiny-test"
TAG_CFG = {"hf_hub": f"{REPO_ID}/"}  # open_clip's convention: the repository's default weights file
SAFE_NAME = "open_clip_model.safetensors"  # what open_clip asks for first for such an entry
COMMIT = "c" * 40

# Adds TAG to open_clip's table in a subprocess, then prints what the weights module made of it as JSON.
DOWNLOAD_SCRIPT = f"""
import json, sys
from hashing.encoders import weights
pretrained = weights.open_clip_pretrained()
original = pretrained.get_pretrained_cfg
pretrained.get_pretrained_cfg = lambda arch, tag: (
    dict({TAG_CFG!r}) if (arch, weights.clean_tag(tag)) == ({TINY!r}, {TAG!r}) else original(arch, tag))
try:
    out = {{"path": str(weights.pretrained_weights_file({TINY!r}, {TAG!r}, sys.argv[1], log=print))}}
except weights.WeightsUnavailableError as error:
    out = {{"error": str(error)}}
out["heavy"] = sorted(m for m in ("torch", "open_clip", "ray", "prefect") if m in sys.modules)
print(json.dumps(out))
"""


class FakeHub:
    """Serves ``files`` (URL path -> bytes) as the Hugging Face hub's resolve endpoint does, and logs requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> bytes | None:
                hub.requests.append((self.command, self.path))
                body = hub.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return body

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer()

            def do_GET(self) -> None:  # noqa: N802
                body = self._answer()
                if body is not None:
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def hubtest_tag(monkeypatch):
    """TAG in open_clip's table for this process (the table weights.py and the encoder read)."""
    pretrained = weights.open_clip_pretrained()
    original = pretrained.get_pretrained_cfg
    monkeypatch.setattr(pretrained, "get_pretrained_cfg", lambda arch, tag: (
        dict(TAG_CFG) if (arch, weights.clean_tag(tag)) == (TINY, TAG) else original(arch, tag)))


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to reach the hub or download."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(weights, "unreachable_reason", refuse)
    monkeypatch.setattr(weights.open_clip_pretrained(), "download_pretrained", refuse)
    monkeypatch.setattr(weights.open_clip_pretrained(), "hf_hub_download", refuse)


def tiny_state_dict(seed: int) -> dict[str, torch.Tensor]:
    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY, pretrained=None)
    return {name: tensor.contiguous() for name, tensor in model.state_dict().items()}


def safetensors_bytes(state: dict[str, torch.Tensor], tmp_path: Path) -> bytes:
    path = tmp_path / "served.safetensors"
    save_file(state, str(path))
    return path.read_bytes()


def put_in_hf_cache(cache_dir: Path, repo_id: str, filename: str, content: bytes) -> Path:
    """A file where hf_hub_download would have left it."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    path = repo_dir / "snapshots" / COMMIT / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def download_in_subprocess(endpoint: str, cache_dir: Path, tmp_path: Path) -> tuple[dict, str]:
    """Run DOWNLOAD_SCRIPT online against ``endpoint``; (its JSON result, its stderr)."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run([sys.executable, "-c", DOWNLOAD_SCRIPT, str(cache_dir)], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


# --- no network --------------------------------------------------------------------------------


def test_a_cached_tag_is_used_without_touching_the_network(tmp_path, monkeypatch, hubtest_tag, no_network):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # online, yet the cache answers
    cached = put_in_hf_cache(tmp_path, REPO_ID, SAFE_NAME, b"weights")
    assert weights.pretrained_weights_file(TINY, TAG, str(tmp_path)) == cached
    weights.check_encoder_options(OpenClipEncoderConfig(arch=TINY, pretrained=TAG, cache_dir=str(tmp_path)))


def test_offline_mode_gives_the_cache_error_without_trying_to_download(tmp_path, monkeypatch, hubtest_tag,
                                                                       no_network):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError) as caught:
        weights.check_encoder_options(OpenClipEncoderConfig(arch=TINY, pretrained=TAG, cache_dir=str(tmp_path)))
    message = str(caught.value)
    assert "not in the local cache" in message and "HF_HUB_OFFLINE is set" in message
    assert f"{REPO_ID}/{SAFE_NAME}" in message
    for hint in ("--clip-checkpoint", "--clip-pretrained", "--random-weights", "HF_HUB_OFFLINE=1"):
        assert hint in message


def test_an_unknown_tag_fails_before_any_cache_or_network_look_up(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsUnavailableError, match="not an open_clip pretrained tag.*known tags: openai"):
        weights.check_encoder_options(OpenClipEncoderConfig(pretrained="nonsense", cache_dir=str(tmp_path)))


@pytest.mark.parametrize("arch", [TINY, "ViT-B-32", "RN50"])
def test_architectures_read_without_open_clip_match_open_clips_own(arch):
    register_model_configs()
    assert weights.arch_model_cfg(arch) == open_clip.get_model_config(arch)


@pytest.mark.parametrize("arch", ["ViT-Z-99", "hf-hub:timm/x", "../ViT-B-32", ""])
def test_unknown_architectures_are_refused(arch):
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        weights.arch_model_cfg(arch)


def test_the_pretrained_table_loaded_without_torch_is_open_clips():
    light = weights.load_pretrained_without_torch()
    assert light is not open_clip.pretrained
    assert light.list_pretrained() == open_clip.pretrained.list_pretrained()
    for arch, tag in [("ViT-B-32", "openai"), ("ViT-B-16", "laion2b_s34b_b88k"), ("RN50", "yfcc15m")]:
        assert light.get_pretrained_cfg(arch, tag) == open_clip.pretrained.get_pretrained_cfg(arch, tag)
    assert light._has_safetensors  # so it asks for the .safetensors file first, as open_clip does


@pytest.mark.parametrize("device, fragment", [("tpu", "unknown device 'tpu'"), ("cuda:x", "unknown device")])
def test_misspelt_devices_are_refused(device, fragment):
    with pytest.raises(ValueError, match=fragment):
        weights.check_device(device)
    weights.check_device("auto")
    weights.check_device("CPU")


def test_checks_import_no_torch():
    code = ("import sys\nfrom hashing.encoders.weights import OpenClipEncoderConfig, check_encoder_options\n"
            "for options in ({'pretrained': 'nonsense'}, {'checkpoint_path': '/no/such.pt'}, {'arch': 'ViT-Z-9'},\n"
            "                {'pretrained': 'openai', 'cache_dir': sys.argv[1]}, {'device': 'tpu'}):\n"
            "    try:\n"
            "        check_encoder_options(OpenClipEncoderConfig(allow_random_weights=True, **options))\n"
            "    except ValueError as error:\n"
            "        print(type(error).__name__)\n"
            "    except Exception as error:\n"
            "        print(type(error).__name__)\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, "/nonexistent-cache"], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[:5] == ["WeightsUnavailableError", "WeightsUnavailableError", "ValueError",
                         "WeightsUnavailableError", "ValueError"]
    assert lines[-1] == "[]"


# --- a hub on 127.0.0.1 ------------------------------------------------------------------------


def test_a_download_lands_in_the_cache_where_the_encoder_then_finds_it(tmp_path, hub, hubtest_tag):
    state = tiny_state_dict(seed=3)
    hub.files[f"/{REPO_ID}/resolve/main/{SAFE_NAME}"] = safetensors_bytes(state, tmp_path)
    cache_dir = tmp_path / "cache"

    first, _ = download_in_subprocess(hub.url, cache_dir, tmp_path)
    assert "error" not in first, first["error"]
    path = Path(first["path"])
    assert path == cache_dir / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT / SAFE_NAME
    assert path.read_bytes() == hub.files[f"/{REPO_ID}/resolve/main/{SAFE_NAME}"]
    assert first["heavy"] == []  # the download needs no torch either
    assert hub.downloads() == [f"/{REPO_ID}/resolve/main/{SAFE_NAME}"]

    again, _ = download_in_subprocess(hub.url, cache_dir, tmp_path)
    assert again["path"] == first["path"] and len(hub.downloads()) == 1  # the cache answered

    # What a Ray worker does next: build the encoder, offline, from the cache.
    encoder = build_encoder(OpenClipEncoderConfig(arch=TINY, pretrained=TAG, cache_dir=str(cache_dir), device="cpu"))
    reference = build_encoder(OpenClipEncoderConfig(arch=TINY, checkpoint_path=str(tmp_path / "served.safetensors"),
                                                    device="cpu"))
    text = ["a red circle", "a blue square"]
    np.testing.assert_allclose(encoder.encode_text(text), reference.encode_text(text), atol=1e-6)
    assert encoder.describe()["pretrained"] == TAG and encoder.encoder_id.startswith(f"{TINY}-{TAG}-")


def test_an_unreachable_hub_is_one_clear_error_without_retries(tmp_path):
    result, stderr = download_in_subprocess(f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", tmp_path)
    message = result["error"]
    assert "not in the local cache, and the Hugging Face hub could not be reached" in message
    assert "ConnectError" in message
    for hint in ("HF_HUB_OFFLINE=1", "--clip-checkpoint", "--random-weights"):
        assert hint in message
    assert "Traceback" not in message and "Traceback" not in stderr
    assert "Retrying" not in stderr  # one probe, not huggingface_hub's 23 s of retries
    assert not (tmp_path / "cache").exists()


def test_a_failed_download_says_what_the_hub_answered(tmp_path, hub):
    result, _ = download_in_subprocess(hub.url, tmp_path / "cache", tmp_path)  # the hub has no such file
    message = result["error"]
    assert message.startswith("could not download the weights of open_clip arch 'reelhash-tiny' tag 'hubtest'")
    assert "--clip-checkpoint" in message
    assert {path for _, path in hub.requests} >= {f"/{REPO_ID}/resolve/main/{SAFE_NAME}",
                                                  f"/{REPO_ID}/resolve/main/open_clip_pytorch_model.bin"}
