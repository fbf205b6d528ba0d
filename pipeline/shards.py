"""Committed sets of Parquet shards: the unit of atomic, idempotent writes in the store.

A *shard set* is a directory holding one sub-directory per run (``run-<key>/``). A run writes
``part-00000.parquet``, ``part-00001.parquet``, … under deterministic names (each through a temp file and a
rename) and is committed by writing ``_MANIFEST.json`` last. Readers trust only committed runs, so a run killed
halfway leaves nothing a reader can see, and the next run with the same key starts that directory afresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store import atomic_write_json, atomic_write_parquet

MANIFEST_NAME = "_MANIFEST.json"


def content_key(parts: Iterable[str]) -> str:
    """A short stable key for a run from the strings that define its content."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class ShardRunWriter:
    """Writes the parts of one run, then commits it with a manifest."""

    def __init__(self, set_dir: Path, run_key: str):
        self.run_dir = Path(set_dir) / f"run-{run_key}"
        self.run_key = run_key
        self._files: list[dict] = []
        if self.run_dir.exists() and not (self.run_dir / MANIFEST_NAME).exists():
            # Left over by a run that died before committing: nothing in it was ever visible.
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def is_committed(self) -> bool:
        return (self.run_dir / MANIFEST_NAME).exists()

    def write(self, table: pa.Table) -> Path | None:
        if table.num_rows == 0:
            return None
        path = self.run_dir / f"part-{len(self._files):05d}.parquet"
        atomic_write_parquet(path, table)
        self._files.append({"file": path.name, "rows": table.num_rows})
        return path

    def commit(self, extra: dict) -> dict:
        manifest = {
            "run_key": self.run_key,
            "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "files": self._files,
            "rows": sum(item["rows"] for item in self._files),
            **extra,
        }
        atomic_write_json(self.run_dir / MANIFEST_NAME, manifest)
        return manifest


def committed_runs(set_dir: Path) -> list[tuple[Path, dict]]:
    """Committed runs of a shard set, newest first; uncommitted or unreadable runs are skipped."""
    runs = []
    for manifest_path in Path(set_dir).glob(f"run-*/{MANIFEST_NAME}"):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        runs.append((manifest_path.parent, manifest))
    runs.sort(key=lambda item: item[1].get("committed_at", ""), reverse=True)
    return runs


def iter_run_tables(run_dir: Path, manifest: dict, columns: list[str] | None = None) -> Iterator[pa.Table]:
    for item in manifest.get("files", []):
        yield pq.read_table(run_dir / item["file"], columns=columns)


def read_run(run_dir: Path, manifest: dict, columns: list[str] | None = None) -> pa.Table | None:
    tables = list(iter_run_tables(run_dir, manifest, columns))
    return pa.concat_tables(tables) if tables else None
