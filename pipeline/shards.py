"""Committed sets of Parquet shards: the unit of atomic, idempotent writes in the store.

A *shard set* is a directory holding one sub-directory per run (``run-<key>/``). A run writes
``part-00000.parquet``, ``part-00001.parquet``, … under deterministic names (each through a temp file and a
rename) and is committed by writing ``_MANIFEST.json`` last. Readers trust only committed runs, so a run killed
halfway leaves nothing a reader can see (its staging directory is never listed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store import TEMP_PREFIX, atomic_write_json, atomic_write_parquet

MANIFEST_NAME = "_MANIFEST.json"


def content_key(parts: Iterable[str]) -> str:
    """A short stable key for a run from the strings that define its content."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class ShardRunWriter:
    """Writes the parts of one run into its own staging directory, then commits it under ``run-<key>``.

    Two writers of the same run (two indexes sharing a collection, a retry beside a slow first attempt) never
    touch each other's files: each writes ``.tmp-run-<key>-<unique>/``, puts ``_MANIFEST.json`` in it last and
    renames it to ``run-<key>``. The first rename wins; a later writer finds the run committed and drops its
    own copy (same key, same content). A writer killed halfway leaves only its staging directory, which no
    reader lists and ``reelhash gc`` removes.
    """

    def __init__(self, set_dir: Path, run_key: str):
        self.run_dir = Path(set_dir) / f"run-{run_key}"
        self.run_key = run_key
        self.staging_dir = Path(set_dir) / f"{TEMP_PREFIX}run-{run_key}-{uuid.uuid4().hex[:12]}"
        self._files: list[dict] = []
        self.staging_dir.mkdir(parents=True)

    @property
    def is_committed(self) -> bool:
        return (self.run_dir / MANIFEST_NAME).exists()

    def write(self, table: pa.Table) -> Path | None:
        if table.num_rows == 0:
            return None
        path = self.staging_dir / f"part-{len(self._files):05d}.parquet"
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
        atomic_write_json(self.staging_dir / MANIFEST_NAME, manifest)
        if self.run_dir.exists() and not self.is_committed:
            # A directory without a manifest under the final name comes from before staging directories
            # (writers then wrote in place); nothing in it was ever visible, so it is moved aside for gc.
            with contextlib.suppress(OSError):
                os.rename(self.run_dir, self.run_dir.with_name(f"{TEMP_PREFIX}stale-{self.run_dir.name}-"
                                                               f"{uuid.uuid4().hex[:8]}"))
        try:
            os.rename(self.staging_dir, self.run_dir)
        except OSError:
            if not self.is_committed:
                raise
            # Another writer committed the same run first: keep theirs (same key, same content).
            shutil.rmtree(self.staging_dir, ignore_errors=True)
            return json.loads((self.run_dir / MANIFEST_NAME).read_text())
        return manifest

    def abandon(self) -> None:
        shutil.rmtree(self.staging_dir, ignore_errors=True)


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
