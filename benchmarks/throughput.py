"""Pipeline throughput against the encoder alone, decode alone and the fixed costs — side by side in one run.

On one collection (``--videos`` generated videos plus ``--long-videos`` H.264 files of ``--long-seconds``, the
first 720p), with the encoder of ``reelhash index`` (``--arch``, random weights: the same compute as pretrained):

(a) **encoder alone**: clips of a sample of the collection are decoded once, then encoded in this process with
    ``encode_clips`` at each ``--batch-sizes`` (clips per forward pass; one warm-up call per size excluded), with
    a torch thread per core of the machine. The best size is the *limit*. The pipeline's own setting (``ExtractConfig.encode_batch_size`` clips per call, the encoder's default
    images per forward pass) is timed too.
(b) **decode + sample alone**, per sampling mode: ``pipeline.extract.decode_video_row`` (what a decoder actor
    runs: decord on one thread, clip sampling, thumbnails) over the whole collection in this process, one video
    after another; wall and CPU seconds.
(c) **``reelhash index`` end to end**, per mode: a fresh process per run against one Ray head and one Prefect API
    started here (as ``benchmarks/resume.py`` does), a fresh store per run. *Clips/s after start-up* = clips /
    (end of extraction − start of the encoder's first batch), both read from Ray's task timeline
    (``ray.timeline()``): the first ``encode_batches`` call of the ``ClipEncoderActor`` pool and the last ``write``
    of the ``FeaturePartWriter``. The run's Prefect flow and task runs and the extract task's log (read back from the
    API) split the rest of the wall time. *Fixed seconds* = wall − clips / (clips/s after start-up), split into
    before the first batch and after extraction (fit, hash, evaluate, publish, exit). A warm-up run on
    ``--small-videos`` videos goes first, so every (c) run is a later run on the head; its own fixed seconds are
    those of the first run on a fresh head. ``--repeats`` runs per mode (3; the modes take turns), each with (a)
    measured again just before and after it; each mode reports its run of the median ratio around it, and lists
    every run.
(d) **fixed costs**: ``ray start --head``; ``import ray`` + ``ray.init`` joining it; a local ``ray.init`` as a
    run without ``RAY_ADDRESS`` starts it; the Prefect API (the ephemeral server's command) on a fresh
    ``PREFECT_HOME`` (database migration included), the migration alone, then a second start; the encoder built in
    a fresh process and its first and second batch; the encoder actor's start and first batch inside the pipeline
    (timeline); and two *standalone* ``reelhash index`` runs (no ``RAY_ADDRESS``, no ``PREFECT_API_URL``: each
    starts its own Ray and ephemeral Prefect API) on ``--small-videos`` videos with a fresh ``PREFECT_HOME``, the
    first migrating its database.

Memory: peak RSS of the run — the ``reelhash`` process tree plus the Ray head's worker processes (children of its
raylet, including idle and detached Ray Data actors) — sampled from ``/proc`` every ``--sample-interval`` seconds
during every run (the numbers psutil reports; psutil is not a dependency of the project), summed per sample; the
Ray head's own system processes (GCS, raylet, agents) and PSS (shared pages counted once; read on every 10th sample,
because reading it costs CPU) are reported beside it.
``--rss-sizes`` runs ``reelhash index`` on collections of that many generated videos (default 100 and 1,000) to
check that it is flat.

Writes JSON (every number, the machine, load averages) and prints markdown tables. Everything started here (Ray
head, Prefect API, runs) is stopped on exit, Ctrl-C or failure. Generated media are kept in ``--work-dir``.

    .venv/bin/python benchmarks/throughput.py                      # full: 200 + 10 × 60 s videos, RSS at 100 / 1,000
    .venv/bin/python benchmarks/throughput.py --no-rss             # without the memory runs (much shorter)
    .venv/bin/python benchmarks/throughput.py --quick              # smoke test, a few minutes, tiny sizes
"""

from __future__ import annotations

import argparse
import atexit
import gc
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

from flows.cli import prepare_environment  # noqa: E402  (imports neither prefect nor ray)

os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("RAY_ADDRESS", None)
prepare_environment()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

FULL = {"videos": 200, "long_videos": 10, "long_seconds": 60.0, "batch_sizes": "1,4,8,16,32", "encoder_clips": 96,
        "repeats": 3, "rss_sizes": "100,1000", "small_videos": 4, "work_dir": Path("/tmp/reelhash-throughput"),
        "out": REPO_ROOT / "benchmarks" / "results" / "throughput.json"}
# --quick also skips the warm-up call of (a) and the warm-up run of (c), and times a first batch of 4 clips (instead
# of ExtractConfig.encode_batch_size) in (d).
QUICK = {"videos": 4, "long_videos": 2, "long_seconds": 6.0, "batch_sizes": "4", "encoder_clips": 4,
         "repeats": 1, "rss_sizes": "2,4", "small_videos": 2, "work_dir": Path("/tmp/reelhash-throughput-quick"),
         "out": None}  # None: <work-dir>/throughput-quick.json, so a smoke test never replaces the committed results
# (label, width, height, fps) of the long files: the first is 720p, the others alternate.
LONG_FORMATS = (("720p", 1280, 720, 25), ("360p", 640, 360, 30), ("480p", 854, 480, 25))
KEYFRAME_INTERVAL = 250  # x264's default, as benchmarks/decode_sampling.py
ACCEPT_RATIO, ACCEPT_FIXED_S, ACCEPT_RSS_RATIO, ACCEPT_RSS_BYTES = 0.85, 10.0, 1.2, 3 * 1024**3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="encoder device for (a), (d) and the runs (default auto)")
    parser.add_argument("--videos", type=int, help="generated videos in the collection (default 200)")
    parser.add_argument("--long-videos", type=int, help="long H.264 files added to it, the first 720p (default 10)")
    parser.add_argument("--long-seconds", type=float, help="length of each long file (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated videos")
    parser.add_argument("--work-dir", type=Path, help="generated media (reused if present), stores, logs "
                                                      "(default /tmp/reelhash-throughput)")
    parser.add_argument("--modes", default="uniform,keyframe", help="sampling modes for (b) and (c)")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture, random weights")
    parser.add_argument("--batch-sizes", help="clips per forward pass for (a) (default 1,4,8,16,32)")
    parser.add_argument("--encoder-cpus", type=float, default=None,
                        help="passed to every `reelhash index` run (default: the command's own default)")
    parser.add_argument("--encoder-clips", type=int,
                        help="pre-decoded clips encoded per batch size in (a) (default 96)")
    parser.add_argument("--repeats", type=int,
                        help="(c) runs per sampling mode, the modes taking turns, each with (a) again around it; "
                             "the run of the median ratio is reported (default 3)")
    parser.add_argument("--rss-sizes", help="collection sizes of the memory runs (default 100,1000)")
    parser.add_argument("--no-rss", action="store_true", help="skip the memory runs at --rss-sizes")
    parser.add_argument("--rss-mode", choices=["uniform", "keyframe"], default="uniform",
                        help="sampling mode of the memory runs")
    parser.add_argument("--small-videos", type=int,
                        help="videos of the warm-up run and the two standalone runs (default 4)")
    parser.add_argument("--no-standalone", action="store_true",
                        help="skip the two standalone runs (own Ray and Prefect API) of (d)")
    parser.add_argument("--sample-interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 4 + 2 × 6 s videos, one batch size, memory runs at 2 and 4 videos; "
                             "JSON to <work-dir>/throughput-quick.json unless --out")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/throughput.json)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = args.work_dir / "throughput-quick.json"
    args.batch_sizes = int_list(args.batch_sizes)
    args.rss_sizes = [] if args.no_rss else int_list(args.rss_sizes)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not set(args.modes) <= {"uniform", "keyframe"}:
        parser.error(f"--modes takes uniform and/or keyframe, got {args.modes}")
    if args.videos < 1 or args.long_videos < 0 or args.encoder_clips < 1 or args.small_videos < 1 or args.repeats < 1:
        parser.error("--videos, --encoder-clips, --small-videos and --repeats must be at least 1, --long-videos at "
                     "least 0")
    args.work_dir = args.work_dir.resolve()
    return args


def int_list(text: str) -> list[int]:
    values = [int(part) for part in str(text).split(",") if part.strip()]
    if not values or min(values) < 1:
        raise SystemExit(f"expected comma-separated positive integers, got {text!r}")
    return values


# ---------------------------------------------------------------------------------------------- cleanup


class Cleanup:
    """What this benchmark started, stopped in reverse order on exit, Ctrl-C, SIGTERM or failure."""

    def __init__(self) -> None:
        self._actions: dict[int, tuple[str, Callable[[], None]]] = {}
        self._next = 0
        self._lock = threading.Lock()

    def add(self, label: str, action: Callable[[], None]) -> int:
        with self._lock:
            self._next += 1
            self._actions[self._next] = (label, action)
            return self._next

    def done(self, token: int, run: bool = True) -> None:
        with self._lock:
            entry = self._actions.pop(token, None)
        if entry and run:
            self._call(*entry)

    def run_all(self) -> None:
        while True:
            with self._lock:
                if not self._actions:
                    return
                token = max(self._actions)
                entry = self._actions.pop(token)
            self._call(*entry)

    @staticmethod
    def _call(label: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:  # cleanup goes on with the next item
            print(f"cleanup of {label} failed: {error}", file=sys.stderr)


CLEANUP = Cleanup()


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks, then atexit


# ---------------------------------------------------------------------------------------------- /proc


def _proc_read(pid: int | str, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def process_parents() -> dict[int, int]:
    """pid → parent pid of every process (``/proc/<pid>/stat``)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_read(entry.name, "stat")
            if stat:
                try:
                    parents[int(entry.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
                except (IndexError, ValueError):
                    pass
    return parents


def cmdline(pid: int) -> str:
    data = _proc_read(pid, "cmdline")
    return data.replace(b"\0", b" ").decode("utf-8", "replace").strip() if data else ""


def memory_of(pid: int, with_pss: bool) -> tuple[int, int | None] | None:
    """(RSS, PSS or None) bytes of a process. RSS from ``status`` (kernel counters: cheap); PSS only when asked,
    from ``smaps_rollup``, which walks the page tables — about 20 ms of CPU for a 1.5 GB process, enough to slow
    a 2-core run if taken for every process twice a second."""
    status = _proc_read(pid, "status")
    rss = None
    for line in (status or b"").splitlines():
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1]) * 1024
    if rss is None:
        return None  # gone, a zombie or a kernel thread
    pss = None
    if with_pss:
        for line in (_proc_read(pid, "smaps_rollup") or b"").splitlines():
            if line.startswith(b"Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def descendants(roots: Iterable[int], parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid not in parents:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def own_lineage() -> set[int]:
    """This process and its ancestors: never matched by a marker, never killed."""
    parents, pid, lineage = process_parents(), os.getpid(), set()
    while pid and pid not in lineage:
        lineage.add(pid)
        pid = parents.get(pid, 0)
    return lineage


def marked_processes(marker: str, parents: dict[int, int] | None = None) -> set[int]:
    """Processes whose command line names ``marker`` (a temp dir unique to this benchmark), with descendants."""
    parents = parents if parents is not None else process_parents()
    skip = own_lineage()
    roots = {pid for pid in parents if pid not in skip and marker in cmdline(pid)}
    return descendants(roots, parents) - skip


def kill_marked(marker: str) -> None:
    """SIGKILL, by pid, the processes started with ``marker`` in their command line and their descendants (Ray's
    workers carry only a title such as ``ray::IDLE``, so they are found as children of the marked raylet)."""
    for _ in range(3):
        pids = marked_processes(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)


def kill_group(process: subprocess.Popen) -> None:
    """A child started with ``start_new_session=True``: its whole process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except OSError:
            return
        try:
            process.wait(timeout=10)
            if sig == signal.SIGTERM:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of the group outlived its leader
        except subprocess.TimeoutExpired:
            continue
        except OSError:
            return
        return


# ---------------------------------------------------------------------------------------------- memory


AGENT_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def memory_category(command: str) -> str:
    """``ray_workers``: Ray worker processes (tasks, actors, idle workers); ``ray_system``: GCS, raylet, agents,
    monitors; ``driver``: the ``reelhash`` process and its other children (in a standalone run, its ephemeral
    Prefect API)."""
    if command.startswith(AGENT_TITLES):
        return "ray_system"
    if command.startswith("ray::") or "default_worker.py" in command:
        return "ray_workers"
    if "site-packages/ray/" in command or "/ray/core/src/ray/" in command:
        return "ray_system"
    return "driver"


# PSS is read on one sample in this many (see memory_of); RSS on every one.
PSS_EVERY_SAMPLES = 10


class MemorySampler:
    """Sums RSS per category over the run's processes every ``interval`` seconds, in a thread, and PSS every
    ``PSS_EVERY_SAMPLES`` samples.

    The run's processes: the ``reelhash`` process tree (a standalone run's own Ray is inside it) plus, for runs on
    the shared Ray head, every process whose command line names the head's temp dir and their descendants (the
    raylet's workers). The headline is the peak over samples of driver + Ray workers.
    """

    def __init__(self, marker: str | None, interval: float) -> None:
        self.marker, self.interval = marker, interval
        self.root: int | None = None
        self.samples = 0
        self.peak: dict[str, Any] = {}
        self.peak_total_rss = 0
        self.peak_pss = 0
        self.peak_per_category: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="memory-sampler")
        self._skip = own_lineage()

    def snapshot(self, with_pss: bool = True) -> dict[str, Any]:
        parents = process_parents()
        roots = {self.root} if self.root else set()
        if self.marker:
            roots |= {pid for pid in parents if pid not in self._skip and self.marker in cmdline(pid)}
        members = descendants(roots, parents) - self._skip
        rss: dict[str, int] = defaultdict(int)
        pss: dict[str, int] = defaultdict(int)
        processes = []
        for pid in members:
            memory = memory_of(pid, with_pss)
            if memory is None:
                continue
            command = cmdline(pid)
            category = memory_category(command)
            rss[category] += memory[0]
            pss[category] += memory[1] if memory[1] is not None else 0
            processes.append((memory[0], category, command[:80]))
        run_rss = rss["driver"] + rss["ray_workers"]
        return {"time": time.time(), "driver_plus_workers_rss": run_rss, "with_pss": with_pss,
                "driver_plus_workers_pss": pss["driver"] + pss["ray_workers"] if with_pss else None,
                "all_rss": sum(rss.values()), "all_pss": sum(pss.values()),
                "rss": dict(rss), "pss": dict(pss), "processes": len(processes),
                "largest": [{"rss_mb": round(r / 2**20, 1), "category": c, "command": t}
                            for r, c, t in sorted(processes, reverse=True)[:10]]}

    def _take(self) -> None:
        sample = self.snapshot(with_pss=self.samples % PSS_EVERY_SAMPLES == 0)
        self.samples += 1
        if sample["with_pss"]:
            self.peak_pss = max(self.peak_pss, sample["driver_plus_workers_pss"])
        if sample["driver_plus_workers_rss"] > self.peak.get("driver_plus_workers_rss", -1):
            self.peak = sample
        self.peak_total_rss = max(self.peak_total_rss, sample["all_rss"])
        for category, value in sample["rss"].items():
            self.peak_per_category[category] = max(self.peak_per_category[category], value)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._take()
            except Exception as error:  # a process vanished mid-read; the next sample will do
                print(f"memory sample failed: {error}", file=sys.stderr)
            self._stop.wait(self.interval)

    def start(self, root: int) -> None:
        self.root = root
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=30)
        peak = self.peak
        return {
            "samples": self.samples, "interval_s": self.interval,
            "peak_driver_plus_workers_rss_bytes": peak.get("driver_plus_workers_rss", 0),
            "pss_at_that_peak_bytes": peak.get("driver_plus_workers_pss"),  # None unless PSS was read then
            "peak_driver_plus_workers_pss_bytes": self.peak_pss,
            "pss_every_samples": PSS_EVERY_SAMPLES,
            "peak_all_processes_rss_bytes": self.peak_total_rss,
            "peak_per_category_rss_bytes": dict(self.peak_per_category),
            "at_peak": {key: peak.get(key) for key in ("rss", "pss", "processes", "largest")},
        }


# ---------------------------------------------------------------------------------------------- services


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def venv_tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class RayHead:
    """``ray start --head`` with its own temp dir and ports, so it never touches another Ray on the machine."""

    def __init__(self, num_cpus: int, object_store_bytes: int, log_path: Path) -> None:
        # Short: Ray's Unix sockets live under it (a socket path is limited to 107 bytes).
        self.temp_dir = f"/tmp/rhtp-{uuid.uuid4().hex[:8]}"
        self.num_cpus, self.object_store_bytes, self.log_path = num_cpus, object_store_bytes, log_path
        self.address: str | None = None

    def start(self) -> float:
        ports = free_ports(7)  # no Ray client server: it needs ray[client], which is not installed
        names = ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port", "node-manager-port", "object-manager-port")
        options = [f"--{name}={port}" for name, port in zip(names, ports, strict=True)]
        command = [venv_tool("ray"), "start", "--head", *options,
                   f"--temp-dir={self.temp_dir}", "--include-dashboard=false", "--disable-usage-stats",
                   f"--num-cpus={self.num_cpus}", f"--object-store-memory={self.object_store_bytes}"]
        CLEANUP.add("Ray head", self.stop)
        started = time.perf_counter()
        with open(self.log_path, "ab") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        seconds = time.perf_counter() - started
        self.address = f"127.0.0.1:{ports[0]}"
        return seconds

    def stop(self) -> None:
        kill_marked(self.temp_dir)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def prefect_package_parent() -> str:
    import importlib.util

    return str(Path(importlib.util.find_spec("prefect").submodule_search_locations[0]).parent)


def prefect_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return env


class PrefectAPI:
    """The Prefect API as a ``reelhash`` run without ``PREFECT_API_URL`` starts it (Prefect's ephemeral server
    command: uvicorn serving ``prefect.server.api.server:create_app``, which migrates the database on start), on
    its own ``PREFECT_HOME`` and port."""

    def __init__(self, home: Path, log_path: Path) -> None:
        self.home, self.log_path = home, log_path
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._token: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 300.0) -> float:
        self.home.mkdir(parents=True, exist_ok=True)
        [self.port] = free_ports(1)
        env = {**prefect_env(self.home), "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        command = [sys.executable, "-m", "uvicorn", "--app-dir", prefect_package_parent(), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "error", "--lifespan", "on"]
        log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                        start_new_session=True)
        log.close()
        self._token = CLEANUP.add("Prefect API", self.stop)
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect API exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the Prefect API did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process)
            self.process = None
        if self._token is not None:
            CLEANUP.done(self._token, run=False)
            self._token = None

    def post(self, path: str, body: dict) -> Any:
        request = urllib.request.Request(f"{self.api_url}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())


def epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def flow_run_breakdown(api: PrefectAPI, started: float, ended: float) -> dict[str, Any] | None:
    """The run's flow run, task runs and the extract task's "videos to decode" log line (logged once the driver has
    the encoder's facts and has read the catalog and the feature cache), in seconds from the process start."""
    flows = api.post("/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 200})
    runs = [f for f in flows if f.get("start_time") and started - 1 <= epoch(f["start_time"]) <= ended + 1]
    if not runs:
        return None
    flow = runs[0]

    def rel(value: str | None) -> float | None:
        stamp = epoch(value)
        return None if stamp is None else round(stamp - started, 3)

    tasks = api.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow["id"]]}},
                                           "sort": "EXPECTED_START_TIME_ASC", "limit": 200})
    logs, offset = [], 0
    while True:
        page = api.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow["id"]]}}, "sort": "TIMESTAMP_ASC",
                                         "limit": 200, "offset": offset})
        logs += page
        offset += len(page)
        if len(page) < 200:
            break
    planned = next((log["timestamp"] for log in logs if "videos to decode" in log.get("message", "")), None)
    # The extract task's summary line says when the first batch came back from the writer, counted from the start
    # of extraction (just after the "videos to decode" line).
    first = next((m for log in logs if (m := FIRST_BATCH_LOG.search(log.get("message", "")))), None)
    first_written = rel(planned) + float(first.group(1)) if first and planned else None
    return {
        "flow_run_start_s": rel(flow["start_time"]), "flow_run_end_s": rel(flow.get("end_time")),
        "tasks": [{"name": t["name"], "start_s": rel(t.get("start_time")), "end_s": rel(t.get("end_time")),
                   "seconds": round(epoch(t["end_time"]) - epoch(t["start_time"]), 3)
                   if t.get("start_time") and t.get("end_time") else None} for t in tasks],
        "extract_planned_s": rel(planned),
        "first_batch_written_s": None if first_written is None else round(first_written, 3),
    }


FIRST_BATCH_LOG = re.compile(r"the first batch after ([0-9.]+) s")


def task_start(breakdown: dict | None, prefix: str, key: str = "start_s") -> float | None:
    if not breakdown:
        return None
    return next((t[key] for t in breakdown["tasks"] if t["name"].startswith(prefix)), None)


# ---------------------------------------------------------------------------------------------- children


def run_child(kind: str, *arguments: str, env: dict | None = None, timeout: float = 900) -> dict:
    """This script in a fresh process (``_child KIND …``); returns the JSON it prints last."""
    done = subprocess.run([sys.executable, __file__, "_child", kind, *arguments], cwd=REPO_ROOT,
                          env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "timeline":  # ADDRESS START END: the Ray timeline's task events of a window
        address, start, end = rest[0], float(rest[1]), float(rest[2])
        clock = time.perf_counter()
        import ray

        import_s = time.perf_counter() - clock
        clock = time.perf_counter()
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        init_s = time.perf_counter() - clock
        events = []
        for event in ray.timeline():
            if event.get("ph") == "X" and str(event.get("cat", "")).startswith("task::") and \
                    start * 1e6 <= float(event["ts"]) <= end * 1e6:
                events.append({"cat": event["cat"], "name": event["name"], "ts": float(event["ts"]) / 1e6,
                               "dur": float(event.get("dur", 0)) / 1e6, "tid": event.get("tid")})
        ray.shutdown()
        print(json.dumps({"import_ray_s": import_s, "ray_init_connect_s": init_s, "events": events}))
    elif kind == "ray-local":  # NUM_CPUS OBJECT_STORE_BYTES: a local ray.init as a run without RAY_ADDRESS does
        clock = time.perf_counter()
        import ray

        import_s = time.perf_counter() - clock
        clock = time.perf_counter()
        ray.init(num_cpus=int(rest[0]), object_store_memory=int(rest[1]), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        init_s = time.perf_counter() - clock
        clock = time.perf_counter()
        ray.shutdown()
        print(json.dumps({"import_ray_s": import_s, "ray_init_local_s": init_s,
                          "ray_shutdown_s": time.perf_counter() - clock}))
    elif kind == "prefect-migrate":  # the API database created and migrated on PREFECT_HOME (from the env)
        clock = time.perf_counter()
        import asyncio

        from prefect.server.database import provide_database_interface

        import_s = time.perf_counter() - clock
        clock = time.perf_counter()
        asyncio.run(provide_database_interface().create_db())
        print(json.dumps({"import_s": import_s, "migrate_s": time.perf_counter() - clock}))
    elif kind == "encoder":  # ARCH DEVICE THREADS CLIPS BATCHES: the encoder built and run in a fresh process
        arch, device, threads, n_clips, n_batches = rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4])
        clock = time.perf_counter()
        import numpy as np
        import torch

        from hashing.encoders import build_media_encoder

        import_s = time.perf_counter() - clock
        torch.set_num_threads(threads)
        clock = time.perf_counter()
        encoder = build_media_encoder({"kind": "open_clip", "arch": arch, "allow_random_weights": True,
                                       "device": device})
        build_s = time.perf_counter() - clock
        size = encoder.frame_spec.size
        clips = np.random.default_rng(0).integers(0, 256, (n_clips, 8, size, size, 3), dtype=np.uint8)
        batches = []
        for _ in range(n_batches):
            clock = time.perf_counter()
            encoder.encode_clips(clips)
            batches.append(time.perf_counter() - clock)
        print(json.dumps({"import_s": import_s, "build_s": build_s, "first_batch_s": batches[0],
                          "later_batches_s": batches[1:], "clips_per_batch": n_clips,
                          "device": str(encoder.device), "torch_threads": torch.get_num_threads()}))
    else:
        raise SystemExit(f"unknown child {kind}")
    return 0


def _write_long_video(job: tuple[str, int, int, int, float]) -> str:
    """One long H.264 file with benchmarks/decode_sampling.py's generator (x264 medium, keyframe every 250)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("decode_sampling", REPO_ROOT / "benchmarks" / "decode_sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path, width, height, fps, seconds = job
    module.write_test_video(Path(path), width, height, fps, seconds, KEYFRAME_INTERVAL)
    return path


# ---------------------------------------------------------------------------------------------- collection


def generated_pool(work: Path, needed: int, seed: int) -> Path:
    """A directory of at least ``needed`` generated videos (make_sample_collection), reused when one exists."""
    import pyarrow.parquet as pq

    from pipeline.sample_collection import make_sample_collection

    existing = []
    for directory in work.glob(f"gen-*-s{seed}"):
        manifest = directory / "manifest.parquet"
        try:
            size = int(directory.name.split("-")[1])
        except ValueError:
            continue
        if size >= needed and manifest.exists() and pq.read_metadata(manifest).num_rows == size:
            existing.append((size, directory))
    if existing:
        return min(existing)[1]
    directory = work / f"gen-{needed}-s{seed}"
    started = time.perf_counter()
    make_sample_collection(directory, needed, seed=seed, progress=True)
    print(f"generated {needed} videos in {time.perf_counter() - started:.0f} s", flush=True)
    return directory


def long_videos(work: Path, count: int, seconds: float) -> list[Path]:
    directory = work / "long"
    directory.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for i in range(count):
        label, width, height, fps = LONG_FORMATS[0] if i == 0 else LONG_FORMATS[1 + (i - 1) % 2]
        path = directory / f"long-{i:02d}-{label}-{seconds:g}s.mp4"
        paths.append(path)
        if not path.exists():
            jobs.append((str(path), width, height, fps, seconds))
    if jobs:
        started = time.perf_counter()
        workers = max(1, min(len(jobs), os.cpu_count() or 1, 4))
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for path in pool.map(_write_long_video, jobs):
                print(f"wrote {path}", flush=True)
        print(f"wrote {len(jobs)} long videos in {time.perf_counter() - started:.0f} s", flush=True)
    return paths


def subset_manifest(path: Path, work: Path, pool: Path, n_generated: int, extra: list[Path]) -> Path:
    """A manifest (SOURCE of ``reelhash index``) of the pool's first ``n_generated`` videos, with their captions and
    labels, plus ``extra`` files without captions; uris relative to ``work``, where the manifest lives."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.store import atomic_write_parquet

    table = pq.read_table(pool / "manifest.parquet").slice(0, n_generated)
    prefix = pool.relative_to(work).as_posix()
    table = table.set_column(table.schema.get_field_index("uri"), "uri",
                             pa.array([f"{prefix}/{uri}" for uri in table["uri"].to_pylist()], pa.string()))
    if extra:
        rows = pa.Table.from_pylist([{"uri": p.relative_to(work).as_posix()} for p in extra], schema=table.schema)
        table = pa.concat_tables([table, rows])
    atomic_write_parquet(path, table)
    return path


def collection_rows(manifest: Path) -> list[dict]:
    from pipeline.catalog import discover, fingerprint, video_id

    entries, _ = discover(str(manifest))
    return [{"video_id": video_id("bench", e.uri), "fingerprint": fingerprint(e.path), "path": e.path, "uri": e.uri}
            for e in entries]


# ---------------------------------------------------------------------------------------------- (a) and (b)


def cpu_clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def sample_clips(rows: list[dict], count: int, frame_size: int, resize: str) -> Any:
    """``count`` uniform-mode clips from videos spread over the collection (every k-th video, long ones included)."""
    import numpy as np

    from pipeline.extract import decode_video_row
    from pipeline.sampling import SamplingConfig

    sampling = SamplingConfig(mode="uniform").model_dump()
    clips: list = []
    step = max(1, len(rows) // max(1, count))
    order = rows[::step] + [r for i, r in enumerate(rows) if i % step]
    for row in order:
        for clip in decode_video_row(row, sampling, frame_size, resize):
            if not clip["error"]:
                clips.append(clip["frames"])
            if len(clips) >= count:
                return np.stack(clips)
    if not clips:
        raise RuntimeError("no clip could be decoded from the collection")
    return np.stack(clips)


def encoder_alone(args: argparse.Namespace, rows: list[dict]) -> dict[str, Any]:
    import numpy as np
    import torch

    from hashing.encoders import build_media_encoder
    from pipeline.extract import ExtractConfig

    extract = ExtractConfig()
    # The limit is the encoder on the whole machine: one process with a thread per core. The pipeline's actors
    # (ExtractConfig.encoder_cpus threads each) together have no more cores than that.
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    config = {"kind": "open_clip", "arch": args.arch, "allow_random_weights": True, "device": args.device}
    probe = build_media_encoder(config)
    frame_size, resize, default_images = probe.frame_spec.size, probe.frame_spec.resize, probe.batch_size
    clips = sample_clips(rows, args.encoder_clips, frame_size, resize)
    k = clips.shape[1]
    del probe
    gc.collect()

    def timed(encoder: Any, per_call: int) -> dict[str, Any]:
        if not args.quick:
            encoder.encode_clips(clips[:per_call])  # warm-up at this shape, not timed
        n = max(per_call, (len(clips) // per_call) * per_call)
        batch = clips if n <= len(clips) else np.concatenate([clips] * -(-n // len(clips)))[:n]
        wall, cpu = cpu_clock()
        for start in range(0, n, per_call):
            encoder.encode_clips(batch[start:start + per_call])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"clips": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "clips_per_s": round(n / wall, 3),
                "images_per_s": round(n * k / wall, 2), "cpu_s_per_clip": round(cpu / n, 4),
                "warm_up_call_excluded": not args.quick}

    results: dict[str, Any] = {"clips_sampled": len(clips), "frames_per_clip": k, "frame_size": frame_size,
                               "torch_threads": threads, "batch_sizes": {}}
    encoder = build_media_encoder({**config, "batch_size": max(args.batch_sizes) * k})
    results["device"] = str(encoder.device)
    for size in args.batch_sizes:
        results["batch_sizes"][str(size)] = timed(encoder, size)
        print(f"(a) encoder alone, {size} clips per forward pass: "
              f"{results['batch_sizes'][str(size)]['clips_per_s']:.2f} clips/s", flush=True)
    del encoder
    gc.collect()
    # The pipeline's setting: ClipEncoderActor gets encode_batch_size clips per call; the encoder's default batch
    # (images per forward pass) splits them.
    encoder = build_media_encoder(config)
    setting = timed(encoder, extract.encode_batch_size)
    setting.update({"clips_per_call": extract.encode_batch_size, "images_per_forward": encoder.batch_size,
                    "clips_per_forward": max(1, encoder.batch_size // k)})
    results["cpu_streams"] = encoder.streams
    results["pipeline_setting"] = setting
    print(f"(a) encoder alone, pipeline setting: {setting['clips_per_s']:.2f} clips/s", flush=True)
    del encoder
    gc.collect()
    # The same with one forward pass at a time on all threads (what the encoder did before its CPU streams): part of
    # the limit too, should it be the faster here.
    encoder = build_media_encoder({**config, "cpu_streams": 1})
    single = timed(encoder, extract.encode_batch_size)
    single.update({"clips_per_call": extract.encode_batch_size, "images_per_forward": encoder.batch_size,
                   "cpu_streams": 1})
    results["pipeline_setting_one_stream"] = single
    print(f"(a) encoder alone, pipeline setting, one stream: {single['clips_per_s']:.2f} clips/s", flush=True)
    del encoder
    gc.collect()
    best = max(results["batch_sizes"], key=lambda b: results["batch_sizes"][b]["clips_per_s"])
    if single["clips_per_s"] > results["batch_sizes"][best]["clips_per_s"]:
        results["best_batch_size"], results["best_cpu_streams"] = extract.encode_batch_size, 1
        results["limit_clips_per_s"], results["limit_row"] = single["clips_per_s"], single
        kept_config, per_call = {**config, "cpu_streams": 1}, extract.encode_batch_size
    else:
        results["best_batch_size"], results["best_cpu_streams"] = int(best), results["cpu_streams"]
        results["limit_row"] = results["batch_sizes"][best]
        results["limit_clips_per_s"] = results["limit_row"]["clips_per_s"]
        kept_config, per_call = {**config, "batch_size": int(best) * k}, int(best)
    results["default_images_per_forward"] = default_images
    results["_frame"] = (frame_size, resize)
    # The same measurement again, just before and just after each (c) run: this machine's speed drifts by ±10 %
    # within minutes (the limit ranged from 8.6 to 10.6 clips/s between runs of one day), so (c) is also divided by
    # the limit measured around it. The encoder stays built (idle) in this process meanwhile.
    kept = build_media_encoder(kept_config)
    results["_limit_now"] = lambda: timed(kept, per_call)
    return results


def decode_alone(rows: list[dict], mode: str, frame_size: int, resize: str) -> dict[str, Any]:
    from pipeline.extract import decode_video_row
    from pipeline.sampling import SamplingConfig

    sampling = SamplingConfig(mode=mode).model_dump()
    totals = {"all": [0, 0, 0.0, 0.0], "long": [0, 0, 0.0, 0.0]}  # videos, clips, wall, cpu
    failures = []
    for row in rows:
        wall, cpu = cpu_clock()
        clips = 0
        for clip in decode_video_row(row, sampling, frame_size, resize):
            if clip["error"]:
                failures.append({"uri": row["uri"], "error": clip["error"]})
            else:
                clips += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        for key in ("all", "long") if row["uri"].startswith("long/") else ("all",):
            totals[key][0] += 1
            totals[key][1] += clips
            totals[key][2] += wall
            totals[key][3] += cpu
    out: dict[str, Any] = {}
    for key, (videos, clips, wall, cpu) in totals.items():
        out[key] = {"videos": videos, "clips": clips, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                    "clips_per_s": round(clips / wall, 3) if wall else None,
                    "cpu_s_per_clip": round(cpu / clips, 4) if clips else None}
    out["failures"] = failures
    return out


# ---------------------------------------------------------------------------------------------- runs


def reelhash_command() -> list[str]:
    tool = Path(venv_tool("reelhash"))
    return [str(tool)] if tool.exists() else [sys.executable, "-m", "flows.cli"]


def run_index(label: str, source: Path, mode: str, args: argparse.Namespace, env: dict[str, str],
              marker: str | None, logs: Path, stores: Path) -> dict[str, Any]:
    """One ``reelhash index`` process on a fresh store, sampled for memory; raises if it fails."""
    store = stores / f"{label}-{uuid.uuid4().hex[:6]}"
    command = reelhash_command() + [
        "index", str(source), "--collection", "bench", "--index", "bench", "--store", str(store),
        "--clip-arch", args.arch, "--random-weights", "--device", args.device, "--sampling", mode, "--json",
        *(["--encoder-cpus", str(args.encoder_cpus)] if args.encoder_cpus else [])]
    sampler = MemorySampler(marker, args.sample_interval)
    baseline = sampler.snapshot()
    out_path, err_path = logs / f"{label}.json", logs / f"{label}.log"
    load_before = os.getloadavg()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started, clock = time.time(), time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
        token = CLEANUP.add(f"reelhash index {label}", lambda: kill_group(process))
        sampler.start(process.pid)
        try:
            status = process.wait()
        finally:
            wall = time.perf_counter() - clock
            memory = sampler.stop()
            CLEANUP.done(token)
    ended = time.time()
    if status != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"run {label} failed with exit status {status} (log {err_path}):\n{tail}")
    result = json.loads(out_path.read_text())
    counts = result["counts"]
    memory["baseline_before_run"] = {key: baseline[key] for key in ("driver_plus_workers_rss", "all_rss", "rss")}
    print(f"{label}: {wall:.1f} s, {counts['clips']} clips, peak RSS (driver + Ray workers) "
          f"{memory['peak_driver_plus_workers_rss_bytes'] / 2**30:.2f} GB", flush=True)
    return {"label": label, "mode": mode, "source": str(source), "store": str(store), "wall_s": round(wall, 3),
            "started_at": started, "ended_at": ended, "clips": counts["clips"], "videos": counts.get("videos_indexed"),
            "decoded": counts.get("decoded"), "failed": counts.get("failed"),
            "report_extract_s": counts.get("extract_seconds"), "memory": memory,
            "load_average_before": load_before, "load_average_after": os.getloadavg()}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``intervals``."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def analyse_timeline(events: list[dict], run: dict) -> dict[str, Any] | None:
    """Throughput after start-up and the pipeline's own start from the run's Ray task events."""
    t0 = run["started_at"]

    def of(op: str, name: str | None = None) -> list[tuple[float, float]]:
        return sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                      if op in e["cat"] and (name is None or e["name"] == name))

    encode, inits = of("ClipEncoderActor", "encode_batches"), of("ClipEncoderActor", "__init__")
    writes, decodes = of("FeaturePartWriter", "write"), of("DecoderActor", "decode")
    writer_inits = of("FeaturePartWriter", "__init__")
    if not encode:
        return None
    first_start, first_end = encode[0]
    end = max(e for _, e in (writes or encode))
    span = end - first_start
    # A CPU actor runs two calls at once (pipeline/encoder_pool.CPU_ACTOR_CALLS_AT_ONCE): an actor is busy while any
    # of its calls runs; with several actors (one per GPU, or a larger cluster) busy is their sum.
    per_actor: dict[tuple, list[tuple[float, float]]] = {}
    for e in events:
        if "ClipEncoderActor" in e["cat"] and e["name"] == "encode_batches":
            per_actor.setdefault((e.get("pid"), e.get("tid")), []).append((e["ts"], e["ts"] + e["dur"]))
    busy = sum(covered_seconds(calls) for calls in per_actor.values())
    actors = max(1, len(inits))
    decode_span = (max(e for _, e in decodes) - decodes[0][0]) if decodes else 0.0
    rel = lambda value: round(value - t0, 3)  # noqa: E731
    out = {
        "first_decode_task_start_s": rel(decodes[0][0]) if decodes else None,
        "encoder_actor_init_start_s": rel(inits[0][0]) if inits else None,
        "encoder_actor_init_s": round(inits[0][1] - inits[0][0], 3) if inits else None,
        "encoder_actors": len(inits),
        "writer_actor_init_start_s": rel(writer_inits[0][0]) if writer_inits else None,
        "writer_actor_init_end_s": rel(writer_inits[0][1]) if writer_inits else None,
        "first_encoder_batch_start_s": rel(first_start),
        "first_encoder_call_s": round(first_end - first_start, 3),
        "extraction_end_s": rel(end),
        "encoder_calls": len(encode),
        "steady_span_s": round(span, 3),
        "clips_per_s_after_startup": round(run["clips"] / span, 3) if span > 0 else None,
        "encoder_busy_s": round(busy, 3),
        "encoder_busy_fraction": round(busy / (span * actors), 3) if span > 0 else None,
        "encoder_clips_per_busy_s": round(run["clips"] / busy, 3) if busy > 0 else None,  # per actor
        "decode_tasks": len(decodes),
        "decode_task_seconds": round(sum(e - s for s, e in decodes), 3),
        "decode_max_concurrent": max_overlap(decodes) if decodes else 0,
        "decode_mean_concurrent": round(sum(e - s for s, e in decodes) / decode_span, 2) if decode_span > 0 else None,
    }
    if inits:
        out["encoder_wait_after_init_s"] = round(first_start - inits[0][1], 3)
    return out


def cpu_bound_ceiling(results: dict, mode: str) -> float | None:
    """On a CPU encoder: the highest (c)/(a) the machine allows if decoding and encoding share the cores the encoder
    alone used, = encoder CPU s per clip / (encoder + decode CPU s per clip)."""
    if results["machine"]["device"] != "cpu":
        return None
    encoder = results["encoder_alone"]["limit_row"]
    decode = results["decode_alone"].get(mode, {}).get("all", {}).get("cpu_s_per_clip")
    if not decode or not encoder.get("cpu_s_per_clip"):
        return None
    return round(encoder["cpu_s_per_clip"] / (encoder["cpu_s_per_clip"] + decode), 4)


def fixed_split(run: dict, rate: float | None) -> None:
    """fixed = wall − clips / rate, split at the first encoder batch and the end of extraction when known."""
    if not rate:
        return
    run["fixed_s"] = round(run["wall_s"] - run["clips"] / rate, 3)
    timeline = run.get("timeline")
    if timeline:
        run["fixed_before_first_batch_s"] = timeline["first_encoder_batch_start_s"]
        run["fixed_after_extraction_s"] = round(run["wall_s"] - timeline["extraction_end_s"], 3)


def shared_run(label: str, source: Path, mode: str, args: argparse.Namespace, head: RayHead, api: PrefectAPI,
               logs: Path, stores: Path, results: dict) -> dict[str, Any]:
    env = {**prefect_env(api.home), "RAY_ADDRESS": head.address, "PREFECT_API_URL": api.api_url}
    run = run_index(label, source, mode, args, env, head.temp_dir, logs, stores)
    time.sleep(2.0)  # workers report task events about once a second
    try:
        dump = run_child("timeline", head.address, str(run["started_at"] - 1), str(run["ended_at"] + 1))
        results.setdefault("ray_connect", []).append({k: round(dump[k], 3) for k in ("import_ray_s",
                                                                                    "ray_init_connect_s")})
        run["timeline"] = analyse_timeline(dump["events"], run)
        run["timeline_events"] = len(dump["events"])
    except Exception as error:
        run["timeline"] = None
        run["timeline_error"] = str(error)
    try:
        run["prefect"] = flow_run_breakdown(api, run["started_at"], run["ended_at"])
    except Exception as error:
        run["prefect"] = None
        run["prefect_error"] = str(error)
    rate = (run.get("timeline") or {}).get("clips_per_s_after_startup")
    if rate is None and run.get("report_extract_s"):
        rate = run["clips"] / run["report_extract_s"]  # fallback: the report's extraction seconds (start included)
        run["rate_source"] = "report extract_seconds (no timeline)"
    else:
        run["rate_source"] = "ray timeline"
    run["clips_per_s_after_startup"] = round(rate, 3) if rate else None
    fixed_split(run, rate)
    return run


# ---------------------------------------------------------------------------------------------- report


def gb(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**30:.2f}"


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    parts = []
    enc = results["encoder_alone"]
    rows = [[f"{b} clips ({int(b) * enc['frames_per_clip']} images) per forward", r["clips"], num(r["clips_per_s"]),
             num(r["images_per_s"], 1), num(r["wall_s"], 1), num(r["cpu_s"], 1)]
            for b, r in enc["batch_sizes"].items()]
    setting = enc["pipeline_setting"]
    rows.append([f"pipeline setting: {setting['clips_per_call']} clips per call, {setting['images_per_forward']} "
                 f"images per forward", setting["clips"], num(setting["clips_per_s"]), num(setting["images_per_s"], 1),
                 num(setting["wall_s"], 1), num(setting["cpu_s"], 1)])
    single = enc.get("pipeline_setting_one_stream")
    if single:
        rows.append(["pipeline setting, one forward pass at a time on all threads (cpu_streams=1)", single["clips"],
                     num(single["clips_per_s"]), num(single["images_per_s"], 1), num(single["wall_s"], 1),
                     num(single["cpu_s"], 1)])
    streams = enc.get("cpu_streams")
    parts.append(f"(a) encoder alone ({results['settings']['arch']}, {enc['device']}, {enc['torch_threads']} torch "
                 f"threads{f', {streams} CPU streams' if streams else ''}): limit **{enc['limit_clips_per_s']:.2f} "
                 f"clips/s** at {enc['best_batch_size']} clips per call"
                 f"{' with one stream' if enc.get('best_cpu_streams') == 1 and streams != 1 else ''}\n\n"
                 + md_table(["batch", "clips", "clips/s", "images/s", "wall s", "CPU s"], rows))
    rows = []
    for mode, r in results["decode_alone"].items():
        rows.append([mode, r["all"]["videos"], r["all"]["clips"], num(r["all"]["wall_s"], 1), num(r["all"]["cpu_s"], 1),
                     num(r["all"]["clips_per_s"]), num(r["long"]["wall_s"], 1), r["long"]["clips"]])
    par = results["pipeline_decode_parallelism"]
    parts.append("(b) decode + sample alone, one process, one thread per video (the pipeline runs up to "
                 f"{par['decode_tasks_at_once_by_resources']} decode tasks at once: {par['cluster_cpus']} logical CPUs "
                 "− "
                 f"{par['encoder_actors']} encoder actor × {par['encoder_cpus']} − writer {par['writer_cpus']}, "
                 f"{par['decode_cpus']} CPU per task)\n\n"
                 + md_table(["mode", "videos", "clips", "wall s", "CPU s", "clips/s", "of which long files: wall s",
                             "long clips"], rows))
    rows = []
    for mode, r in results["pipeline"].items():
        t = r.get("timeline") or {}
        rows.append([mode, r["clips"], num(r["wall_s"], 1), num(r.get("report_extract_s"), 1),
                     num(r.get("clips_per_s_after_startup")), num(r.get("over_encoder_limit"), 3),
                     num(r.get("over_encoder_limit_around_run"), 3),
                     num(r.get("over_encoder_pipeline_setting"), 3), num(r.get("cpu_bound_ceiling"), 3),
                     num(t.get("encoder_busy_fraction"), 2), num(t.get("encoder_clips_per_busy_s")),
                     t.get("decode_max_concurrent", "–"), num(r.get("fixed_s"), 1),
                     num(r.get("fixed_before_first_batch_s"), 1), num(r.get("fixed_after_extraction_s"), 1),
                     gb(r["memory"]["peak_driver_plus_workers_rss_bytes"])])
    first = "a warm-up run went first" if results.get("warmup_run") else "no warm-up run (--quick)"
    parts.append(f"(c) `reelhash index` end to end (one shared Ray head and Prefect API; {first})\n\n"
                 + md_table(["mode", "clips", "wall s", "extract s (report)", "clips/s after start-up", "(c)/(a)",
                             "(c)/(a) around the run",
                             "(c)/(a) at the pipeline's batch", "CPU-bound ceiling of (c)/(a)", "encoder busy",
                             "encoder clips/s while busy", "max decode tasks at once", "fixed s",
                             "start-up s (to the 1st encoder batch)", "after extraction s", "peak RSS GB"], rows))
    repeats = results.get("pipeline_repeats") or {}
    if any(len(runs) > 1 for runs in repeats.values()):
        rows = [[r["label"], num(r["clips_per_s_after_startup"]), num(r["limit_around_run"]),
                 num(r["over_encoder_limit"], 3), num(r["over_encoder_limit_around_run"], 3),
                 num(r["fixed_before_first_batch_s"], 1)]
                for r in sorted((r for runs in repeats.values() for r in runs), key=lambda r: r["started_at"])]
        parts.append("(c) every run, in the order they ran (the table above shows each mode's run of the median "
                     "ratio around it)\n\n"
                     + md_table(["run", "clips/s after start-up", "(a) around it, clips/s", "(c)/(a)",
                                 "(c)/(a) around the run", "start-up s"], rows))
    fixed = results["fixed_costs"]
    rows = [[name, num(value, 2)] for name, value in fixed.items() if isinstance(value, (int, float))]
    parts.append("(d) fixed costs, seconds\n\n" + md_table(["what", "s"], rows))
    if results.get("standalone_runs"):
        rows = [[r["label"], r["clips"], num(r["wall_s"], 1), num(r.get("fixed_s"), 1),
                 num((r.get("prefect") or {}).get("flow_run_start_s"), 1),
                 num(task_start(r.get("prefect"), "extract"), 1),
                 num((r.get("prefect") or {}).get("first_batch_written_s"), 1),
                 gb(r["memory"]["peak_driver_plus_workers_rss_bytes"])]
                for r in results["standalone_runs"]]
        parts.append("(d) standalone `reelhash index` runs (own Ray and ephemeral Prefect API, fresh PREFECT_HOME "
                     "for the first)\n\n" + md_table(["run", "clips", "wall s", "fixed s", "flow run starts at s",
                                                      "extract task starts at s", "first batch written at s",
                                                      "peak RSS GB"], rows))
    if results.get("memory"):
        mem = results["memory"]
        rows = [[r["generated_videos"], r["clips"], num(r["wall_s"], 1),
                 gb(r["memory"]["peak_driver_plus_workers_rss_bytes"]),
                 gb(r["memory"].get("peak_driver_plus_workers_pss_bytes")),
                 gb(r["memory"]["peak_all_processes_rss_bytes"]), num(r.get("clips_per_s_after_startup"))]
                for r in mem["runs"]]
        parts.append(f"Memory ({mem['mode']} sampling): larger / smaller = **{num(mem.get('ratio'), 3)}**, max "
                     f"**{gb(mem.get('max_bytes'))} GB**\n\n"
                     + md_table(["videos", "clips", "wall s", "peak RSS driver + Ray workers GB", "peak PSS (every 10th sample) GB",
                                 "peak RSS incl. Ray system GB", "clips/s after start-up"], rows))
    acc = results["acceptance"]
    lines = [f"- {name}: {value}" for name, value in acc.items()]
    parts.append("Acceptance (issue 15)\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def median_run(runs: list[dict]) -> dict:
    """The run whose ratio to the limit measured around it is the median (the lower middle one of an even count):
    this machine's speed drifts by ±10 % within minutes, so one run can land on either side of a bound."""
    ranked = sorted(runs, key=lambda r: r.get("over_encoder_limit_around_run") or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def repeat_summary(run: dict) -> dict:
    return {key: run.get(key) for key in ("label", "started_at", "clips_per_s_after_startup", "over_encoder_limit",
                                          "over_encoder_limit_around_run", "fixed_before_first_batch_s")} | {
        "limit_around_run": (run.get("encoder_limit_around_run") or {}).get("mean_clips_per_s")}


def acceptance(results: dict) -> dict[str, str]:
    out = {}
    for mode, run in results["pipeline"].items():
        ratio = run.get("over_encoder_limit")
        repeats = results.get("pipeline_repeats", {}).get(mode, [])
        of_runs = "" if len(repeats) < 2 else (
            f"; the run of the median ratio around it, of {len(repeats)}: "
            + ", ".join(f"{r['over_encoder_limit']:.3f} / {r['over_encoder_limit_around_run']:.3f} around"
                        for r in repeats if r.get("over_encoder_limit") is not None))
        out[f"pipeline / encoder limit, {mode}"] = (
            "not measured" if ratio is None else
            f"{ratio:.3f} ({'met' if ratio >= ACCEPT_RATIO else 'NOT met'}, bound {ACCEPT_RATIO}{of_runs})")
        around = run.get("over_encoder_limit_around_run")
        if around is not None:
            limit = run["encoder_limit_around_run"]
            out[f"pipeline / encoder limit measured just before and after the run, {mode}"] = (
                f"{around:.3f} ({'met' if around >= ACCEPT_RATIO else 'NOT met'}, bound {ACCEPT_RATIO}; limit "
                f"{limit['before']['clips_per_s']:.2f} before, {limit['after']['clips_per_s']:.2f} after)")
    # Start-up: from the process start to the first encoder batch — what the issue lists (Ray and Prefect API start,
    # encoder actor start, first batch). "fixed" (wall − clips / rate) also holds the end of a run, which grows with
    # the collection (its captions' encoding, fitting, evaluating) and the process exit; it is reported beside it.
    shared = [r for r in results["pipeline"].values() if r.get("fixed_before_first_batch_s") is not None]
    if shared:
        every_run = [r for runs in (results.get("pipeline_repeats") or {}).values() for r in runs] or shared
        worst = max(r["fixed_before_first_batch_s"] for r in every_run if r.get("fixed_before_first_batch_s") is not None)
        out["start-up (process start → first encoder batch), runs on the running Ray head and Prefect API"] = (
            f"max {worst:.1f} s ({'met' if worst <= ACCEPT_FIXED_S else 'NOT met'}, bound {ACCEPT_FIXED_S} s); "
            "fixed in all (wall − clips / rate, with the end of the run and the exit) max "
            f"{max(r['fixed_s'] for r in shared):.1f} s")
    standalone = results.get("standalone_runs") or []
    if len(standalone) >= 2 and standalone[1].get("fixed_s") is not None:
        second = standalone[1]
        written = (second.get("prefect") or {}).get("first_batch_written_s")
        verdict = "not measured" if written is None else (
            f"first batch written at {written:.1f} s, an upper bound "
            f"({'met' if written <= ACCEPT_FIXED_S else 'NOT met'}, bound {ACCEPT_FIXED_S} s)")
        out["start-up, second standalone run (own Ray and temporary Prefect API)"] = (
            f"{verdict}; fixed in all {second['fixed_s']:.1f} s")
        out["fixed start-up, first standalone run (fresh PREFECT_HOME)"] = (
            f"{standalone[0].get('fixed_s', float('nan')):.1f} s in all, of which the Prefect database migration "
            f"alone takes {results['fixed_costs'].get('prefect_migration_only_s', float('nan')):.1f} s")
    mem = results.get("memory")
    if mem and mem.get("ratio") is not None:
        ok = mem["ratio"] <= ACCEPT_RSS_RATIO and mem["max_bytes"] < ACCEPT_RSS_BYTES
        out["peak RSS flat in collection size"] = (
            f"{mem['ratio']:.3f}× from {mem['runs'][0]['generated_videos']} to {mem['runs'][-1]['generated_videos']} "
            f"videos, max {mem['max_bytes'] / 2**30:.2f} GB ({'met' if ok else 'NOT met'}, bounds "
            f"{ACCEPT_RSS_RATIO}× and 3 GB)")
    return out


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    import decord
    import open_clip
    import prefect
    import ray
    import torch

    from hashing.encoders.device import select_device

    device = select_device(args.device)
    return {
        "platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
        "open_clip": open_clip.__version__,
        "ray": ray.__version__, "prefect": prefect.__version__, "decord": decord.__version__,
        "device": str(device), "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "load_average_at_start": os.getloadavg(),
    }


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C even when started in the background by a non-interactive shell, which would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    atexit.register(CLEANUP.run_all)
    try:
        return benchmark(args)
    finally:
        CLEANUP.run_all()


def benchmark(args: argparse.Namespace) -> int:
    from pipeline.extract import WRITER_CPUS, ExtractConfig, decode_slots, encoder_actor_cpus, encoder_pool_size
    from pipeline.ray_runtime import RayConfig, default_local_cpus

    began = time.perf_counter()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    session = uuid.uuid4().hex[:6]
    logs, stores = work / "logs" / session, work / "stores"
    shutil.rmtree(stores, ignore_errors=True)  # stores of earlier benchmark runs; media are kept
    logs.mkdir(parents=True)
    stores.mkdir()
    results: dict[str, Any] = {
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "machine": machine_info(args),
    }
    print(f"work dir {work}, logs {logs}", flush=True)

    # ----- the collection
    pool_size = max([args.videos, args.small_videos, *args.rss_sizes])
    pool = generated_pool(work, pool_size, args.seed)
    longs = long_videos(work, args.long_videos, args.long_seconds)
    main_source = subset_manifest(work / f"collection-{args.videos}-long{args.long_videos}x{args.long_seconds:g}s"
                                         f"-s{args.seed}.parquet", work, pool, args.videos, longs)
    small_source = subset_manifest(work / f"small-{args.small_videos}-s{args.seed}.parquet", work, pool,
                                   args.small_videos, [])
    rows = collection_rows(main_source)
    results["collection"] = {"manifest": str(main_source), "generated_videos": args.videos,
                             "long_videos": [str(p.relative_to(work)) for p in longs],
                             "long_seconds": args.long_seconds, "files": len(rows)}

    # ----- (a) encoder alone, (b) decode alone
    results["encoder_alone"] = encoder_alone(args, rows)
    frame_size, resize = results["encoder_alone"].pop("_frame")
    limit_now = results["encoder_alone"].pop("_limit_now")
    limit = results["encoder_alone"]["limit_clips_per_s"]
    results["decode_alone"] = {}
    for mode in args.modes:
        results["decode_alone"][mode] = decode_alone(rows, mode, frame_size, resize)
        r = results["decode_alone"][mode]["all"]
        print(f"(b) decode alone, {mode}: {r['clips']} clips, {r['wall_s']:.1f} s, {r['clips_per_s']:.2f} clips/s",
              flush=True)
    extract = ExtractConfig(**({"encoder_cpus": args.encoder_cpus} if args.encoder_cpus else {}))
    ray_config = RayConfig()
    results["extract_config"] = extract.model_dump()
    cluster_cpus = default_local_cpus()
    gpus = results["machine"]["gpus"]
    encoder_cpus = encoder_actor_cpus(extract, gpus)
    cluster = {"CPU": cluster_cpus, "GPU": gpus}  # the head started below
    actors = encoder_pool_size(extract, cluster)
    results["pipeline_decode_parallelism"] = {
        "cluster_cpus": cluster_cpus, "encoder_actors": actors, "encoder_cpus": encoder_cpus,
        "writer_cpus": WRITER_CPUS, "decode_cpus": extract.decode_cpus,
        "decode_tasks_at_once_by_resources": decode_slots(extract, actors, cluster),
        "physical_cores": os.cpu_count(),
        "note": "Ray's logical CPUs are twice the cores here (pipeline/ray_runtime.py), so decode tasks and the "
                "encoder actor share the physical cores; (c)'s timeline gives the decode tasks actually at once"}

    # ----- (d) fixed costs measured outside the runs
    fixed: dict[str, Any] = {}
    homes = [work / f"prefect-home-{kind}-{session}" for kind in ("migrate", "shared", "standalone")]
    CLEANUP.add("Prefect homes", lambda: [shutil.rmtree(home, ignore_errors=True) for home in homes])
    migrate = run_child("prefect-migrate", env=prefect_env(homes[0]))
    fixed["prefect_migration_only_s"] = round(migrate["migrate_s"], 3)
    fixed["prefect_server_import_s"] = round(migrate["import_s"], 3)
    local_marker = f"/tmp/rhtp-l{session}"
    CLEANUP.add("local Ray probe", lambda: (kill_marked(local_marker), shutil.rmtree(local_marker, ignore_errors=True)))
    local = run_child("ray-local", str(cluster_cpus), str(ray_config.object_store_mb * 2**20),
                      env={**os.environ, "RAY_TMPDIR": local_marker})
    fixed["ray_import_s"] = round(local["import_ray_s"], 3)
    fixed["ray_init_local_start_s"] = round(local["ray_init_local_s"], 3)
    fixed["ray_local_shutdown_s"] = round(local["ray_shutdown_s"], 3)
    kill_marked(local_marker)
    threads = max(1, int(encoder_cpus))
    first_batch = 4 if args.quick else extract.encode_batch_size
    fresh = run_child("encoder", args.arch, args.device, str(threads), str(first_batch), "2" if args.quick else "3",
                      env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    fixed["encoder_fresh_process_import_s"] = round(fresh["import_s"], 3)
    fixed["encoder_fresh_process_build_s"] = round(fresh["build_s"], 3)
    fixed[f"encoder_fresh_process_first_batch_s ({fresh['clips_per_batch']} clips)"] = round(fresh["first_batch_s"], 3)
    fixed[f"encoder_fresh_process_later_batch_s ({fresh['clips_per_batch']} clips)"] = round(
        min(fresh["later_batches_s"]), 3)
    results["fixed_costs"] = fixed

    # ----- shared Ray head and Prefect API: warm-up, (c), memory runs
    api = PrefectAPI(homes[1], logs / "prefect-api.log")
    fixed["prefect_api_first_start_s (fresh PREFECT_HOME, migration included)"] = round(api.start(), 3)
    api.stop()
    fixed["prefect_api_second_start_s"] = round(api.start(), 3)
    head = RayHead(cluster_cpus, ray_config.object_store_mb * 2**20, logs / "ray-head.log")
    fixed["ray_start_head_s"] = round(head.start(), 3)
    print(f"Ray head at {head.address}, Prefect API at {api.api_url}", flush=True)

    if not args.quick:  # the first run on a fresh head pays for Ray Data's helper actors; (c) runs come after it
        warmup = shared_run("warmup", small_source, args.modes[0], args, head, api, logs, stores, results)
        results["warmup_run"] = warmup
        fixed["first_run_on_fresh_head_fixed_s (warm-up run)"] = warmup.get("fixed_s")
    runs_by_mode: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for repeat, mode in itertools.product(range(args.repeats), args.modes):
        before = limit_now()
        label = f"pipeline-{mode}" + (f"-{repeat + 1}" if args.repeats > 1 else "")
        run = shared_run(label, main_source, mode, args, head, api, logs, stores, results)
        after = limit_now()
        around = (before["clips_per_s"] + after["clips_per_s"]) / 2
        run["encoder_limit_around_run"] = {"before": before, "after": after, "mean_clips_per_s": round(around, 3)}
        rate = run.get("clips_per_s_after_startup")
        run["over_encoder_limit"] = round(rate / limit, 4) if rate else None
        run["over_encoder_limit_around_run"] = round(rate / around, 4) if rate else None
        print(f"(a) again around {mode}: {before['clips_per_s']:.2f} before, {after['clips_per_s']:.2f} after",
              flush=True)
        run["over_encoder_pipeline_setting"] = (
            round(rate / results["encoder_alone"]["pipeline_setting"]["clips_per_s"], 4) if rate else None)
        run["cpu_bound_ceiling"] = cpu_bound_ceiling(results, mode)
        runs_by_mode[mode].append(run)
    results["pipeline"] = {mode: median_run(runs) for mode, runs in runs_by_mode.items()}
    results["pipeline_repeats"] = {mode: [repeat_summary(run) for run in runs] for mode, runs in runs_by_mode.items()}
    if results.get("ray_connect"):
        fixed["ray_init_connect_to_head_s"] = min(c["ray_init_connect_s"] for c in results["ray_connect"])
    later = [r for r in results["pipeline"].values() if r.get("timeline")]
    if later:
        tl = [r["timeline"] for r in later]
        fixed["pipeline_encoder_actor_init_s (median of runs)"] = statistics.median(
            x["encoder_actor_init_s"] or 0 for x in tl)
        fixed["pipeline_first_encoder_call_s (median of runs)"] = statistics.median(
            x["first_encoder_call_s"] for x in tl)
        for r in later:
            p = r.get("prefect") or {}
            fixed[f"{r['label']}: process start → flow run start"] = p.get("flow_run_start_s")
            fixed[f"{r['label']}: process start → extract task start"] = task_start(p, "extract")
            fixed[f"{r['label']}: process start → extraction planned (encoder facts, cache read)"] = p.get(
                "extract_planned_s")
            tl_run = r["timeline"]
            if tl_run.get("encoder_actor_init_start_s") is not None:
                fixed[f"{r['label']}: process start → encoder actor ready"] = round(
                    tl_run["encoder_actor_init_start_s"] + tl_run["encoder_actor_init_s"], 3)
            fixed[f"{r['label']}: process start → writer actor ready"] = tl_run.get("writer_actor_init_end_s")
            fixed[f"{r['label']}: process start → first decode task"] = tl_run["first_decode_task_start_s"]
            fixed[f"{r['label']}: process start → first encoder batch"] = r["timeline"]["first_encoder_batch_start_s"]
            fixed[f"{r['label']}: fixed = wall − clips / throughput"] = r.get("fixed_s")
            fixed[f"{r['label']}: of which after extraction (fit, hash, evaluate, publish, exit)"] = r.get(
                "fixed_after_extraction_s")

    if args.rss_sizes:
        memory_runs = []
        for size in sorted(args.rss_sizes):
            source = subset_manifest(work / f"rss-{size}-s{args.seed}.parquet", work, pool, size, [])
            run = shared_run(f"rss-{size}", source, args.rss_mode, args, head, api, logs, stores, results)
            run["generated_videos"] = size
            memory_runs.append(run)
        peaks = [r["memory"]["peak_driver_plus_workers_rss_bytes"] for r in memory_runs]
        results["memory"] = {
            "mode": args.rss_mode, "runs": memory_runs, "ratio": round(peaks[-1] / peaks[0], 4) if peaks[0] else None,
            "max_bytes": max(peaks),
            "method": "every --sample-interval s, RSS (and PSS) from /proc/<pid>/smaps_rollup summed over the "
                      "reelhash process tree and the Ray head's worker processes (descendants of its raylet, found "
                      "through the head's temp dir); peak over samples",
        }
    api.stop()
    head.stop()

    # ----- standalone runs: own Ray, own ephemeral Prefect API, fresh PREFECT_HOME for the first
    if not args.no_standalone:
        home = homes[2]
        marker = f"/tmp/rhtp-s{session}"
        CLEANUP.add("standalone Ray", lambda: (kill_marked(marker), shutil.rmtree(marker, ignore_errors=True)))
        env = {**prefect_env(home), "RAY_TMPDIR": marker}
        env.pop("RAY_ADDRESS", None)
        standalone = []
        rate = results["pipeline"][args.modes[0]].get("clips_per_s_after_startup")
        for label in ("standalone-first", "standalone-second"):
            run = run_index(label, small_source, args.modes[0], args, env, None, logs, stores)
            run["rate_source"] = f"(c) {args.modes[0]} clips/s after start-up (no timeline for a standalone run)"
            fixed_split(run, rate)
            standalone.append(run)
            kill_marked(marker)
        reader = PrefectAPI(home, logs / "prefect-api-standalone.log")
        fixed["prefect_api_start_on_used_home_s"] = round(reader.start(), 3)
        for run in standalone:
            try:
                run["prefect"] = flow_run_breakdown(reader, run["started_at"], run["ended_at"])
            except Exception as error:
                run["prefect_error"] = str(error)
        reader.stop()
        results["standalone_runs"] = standalone
        fixed["standalone_first_run_fixed_s"] = standalone[0].get("fixed_s")
        fixed["standalone_second_run_fixed_s"] = standalone[1].get("fixed_s")

    results["acceptance"] = acceptance(results)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["benchmark_seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(markdown(results))
    print(f"\nwrote {args.out} ({results['benchmark_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        raise SystemExit(child_main(sys.argv[2:]))
    raise SystemExit(main())
