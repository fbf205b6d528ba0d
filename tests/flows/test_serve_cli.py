"""`reelhash serve` as a user runs it: a real process on a loopback port over a real published index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from served_index import INDEX, free_port, make_served_store


def test_serve_command_answers_searches_and_stops_cleanly(tmp_path):
    store = make_served_store(tmp_path)
    port = free_port()
    env = {**os.environ, "REELHASH_API_TOKEN": "tok"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--store", str(store.layout.root), "--port", str(port),
         "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "reelhash serve did not start"
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/search", params={"q": "a red square"}, timeout=60).status_code == 401
        reply = httpx.get(f"{base}/api/search", params={"q": "a red square"}, headers={"Authorization": "Bearer tok"},
                          timeout=60)
        assert reply.status_code == 200 and reply.json()["index"] == INDEX
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"serving index {INDEX} v1" in err and "Traceback" not in err
