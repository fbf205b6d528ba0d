"""Committed sets of Parquet shards: the unit of atomic, idempotent writes in the store.

A *shard set* is a directory (an object prefix) holding one sub-directory per run (``run-<key>/``). A writer puts
its parts there under names unique to it (``part-<writer>-00000.parquet``…, each one atomic write) and commits the
run by creating ``_MANIFEST.json``, which lists the parts, exclusively and last. Nothing is renamed, so the same
protocol holds on local disk and in object stores (docs/architecture.md, "Commit protocol"). Readers trust only
the parts a committed manifest lists, so a run killed halfway leaves nothing a reader can see.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Iterator

import pyarrow as pa

from pipeline.store import StorePath, as_path, create_exclusive_json, atomic_write_parquet, read_json, read_parquet, remove_tree

MANIFEST_NAME = "_MANIFEST.json"


def content_key(parts: Iterable[str]) -> str:
    """A short stable key for a run from the strings that define its content."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class ShardRunWriter:
    """Writes the parts of one run under ``run-<key>/`` and commits them with an exclusively created manifest.

    Two writers of the same run (two indexes sharing a collection, a retry beside a slow first attempt) never
    touch each other's files: each names its parts with its own id. The first manifest created wins; a later
    writer finds the run committed, removes its own parts and returns the winner's manifest (same key, same
    content). Parts of a writer killed halfway are listed by no manifest; ``reelhash gc`` removes them.
    """

    def __init__(self, set_dir: StorePath, run_key: str):
        self.run_dir = as_path(set_dir) / f"run-{run_key}"
        self.run_key = run_key
        self.writer_id = uuid.uuid4().hex[:12]
        self._files: list[dict] = []

    @property
    def is_committed(self) -> bool:
        return (self.run_dir / MANIFEST_NAME).exists()

    def write(self, table: pa.Table) -> StorePath | None:
        if table.num_rows == 0:
            return None
        path = self.run_dir / f"part-{self.writer_id}-{len(self._files):05d}.parquet"
        atomic_write_parquet(path, table)
        self._files.append({"file": path.name, "rows": table.num_rows})
        return path

    def commit(self, extra: dict) -> dict:
        manifest = commit_run(self.run_dir, self._files, extra)
        if manifest["files"] != self._files:
            self._files = []  # another writer's commit won; ours were removed
        return manifest

    def abandon(self) -> None:
        for item in self._files:
            remove_tree(self.run_dir / item["file"])
        self._files = []


def commit_run(run_dir: StorePath, files: list[dict], extra: dict) -> dict:
    """Commit parts already written under ``run_dir`` (``[{"file", "rows"}]``) by creating its manifest.

    Parts may have been written anywhere (a Ray worker on another node); only this small object is written here.
    If another writer committed the run first, its manifest is returned and these parts are removed.
    """
    run_dir = as_path(run_dir)
    manifest = {
        "run_key": run_dir.name.removeprefix("run-"),
        "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "files": list(files),
        "rows": sum(item["rows"] for item in files),
        **extra,
    }
    if create_exclusive_json(run_dir / MANIFEST_NAME, manifest):
        return manifest
    for item in files:  # same key, same content: keep theirs
        remove_tree(run_dir / item["file"])
    return read_json(run_dir / MANIFEST_NAME)


def new_part_name(number: int = 0) -> str:
    """A part name no other writer uses: ``part-<12 hex>-<number>.parquet``."""
    return f"part-{uuid.uuid4().hex[:12]}-{number:05d}.parquet"


def committed_runs(set_dir: StorePath) -> list[tuple[StorePath, dict]]:
    """Committed runs of a shard set, newest first; uncommitted or unreadable runs are skipped."""
    runs = []
    for manifest_path in as_path(set_dir).glob(f"run-*/{MANIFEST_NAME}"):
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError):
            continue
        runs.append((manifest_path.parent, manifest))
    runs.sort(key=lambda item: item[1].get("committed_at", ""), reverse=True)
    return runs


def iter_run_tables(run_dir: StorePath, manifest: dict, columns: list[str] | None = None) -> Iterator[pa.Table]:
    for item in manifest.get("files", []):
        yield read_parquet(as_path(run_dir) / item["file"], columns=columns)


def read_run(run_dir: StorePath, manifest: dict, columns: list[str] | None = None) -> pa.Table | None:
    tables = list(iter_run_tables(run_dir, manifest, columns))
    return pa.concat_tables(tables) if tables else None
