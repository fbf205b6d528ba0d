"""``reelhash gc``: delete what no committed manifest or kept index version needs, never what a writer is using.

What is removed:
- leftovers of killed writers: ``.tmp-*`` files and staging directories (shard runs, index versions, model
  versions) and ``run-*`` directories without a ``_MANIFEST.json``;
- with ``keep_versions=N``: index versions older than the newest N of each index (never the one ``CURRENT``
  names), and then code runs that no kept version of any index references and that are not the newest run of
  their set (they can be re-hashed from cached features).

What is never removed: ``CURRENT``, catalogs, cached features and clips, models (a version may be pinned by an
index elsewhere or be the one a user will publish next), registry and locks.

Locks: a leftover under an index or a collection is removed only when that index's or collection's lock is free
(the writer is gone); leftovers that no lock covers (model staging) only when older than ``grace_seconds``.
Whatever is held is reported as skipped.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.locks import collection_lock_path, index_run_lock_path, is_locked
from pipeline.publish import current_version, list_versions
from pipeline.shards import MANIFEST_NAME, committed_runs
from pipeline.store import TEMP_PREFIX, StoreLayout, read_json

GRACE_SECONDS = 3600.0
# Store areas whose second path component names a collection: <area>/<...>/<collection>/...
COLLECTION_AREAS = {"catalog": 1, "features": 2, "clips": 2, "codes": 2}


@dataclass
class GcReport:
    removed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def size_of(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def collect_garbage(layout: StoreLayout, *, keep_versions: int | None = None, dry_run: bool = False,
                    grace_seconds: float = GRACE_SECONDS) -> GcReport:
    if keep_versions is not None and keep_versions < 1:
        raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
    report = GcReport(dry_run=dry_run)
    if not layout.root.is_dir():
        return report
    for path in sorted(leftovers(layout.root)):
        busy = holder_lock(layout, path)
        if busy is not None and is_locked(busy):
            _skip(report, layout, path, f"{busy.name} is held by a running writer")
        elif busy is None and time.time() - path.lstat().st_mtime < grace_seconds:
            _skip(report, layout, path, f"younger than {grace_seconds:.0f} s and no lock covers it")
        else:
            _remove(report, layout, path, "left by a writer that did not finish")
    if keep_versions is not None:
        for index_dir in sorted(p for p in (layout.root / "index").glob("*") if p.is_dir()):
            drop_old_versions(layout, index_dir.name, keep_versions, report)
        drop_unreferenced_code_runs(layout, report)
    return report


def leftovers(root: Path) -> list[Path]:
    found = []
    for directory, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            path = Path(directory) / name
            uncommitted_run = name.startswith("run-") and not (path / MANIFEST_NAME).exists()
            if name.startswith(TEMP_PREFIX) or uncommitted_run:
                found.append(path)
                dirnames.remove(name)  # its content goes with it
        found += [Path(directory) / name for name in filenames if name.startswith(TEMP_PREFIX)]
    return found


def holder_lock(layout: StoreLayout, path: Path) -> Path | None:
    """The lock a writer of ``path`` holds while writing it (None: no lock covers it)."""
    parts = path.relative_to(layout.root).parts
    if parts[0] == "index" and len(parts) > 1:
        return index_run_lock_path(layout, parts[1])
    depth = COLLECTION_AREAS.get(parts[0])
    if depth is not None and len(parts) > depth + 1:
        return collection_lock_path(layout, parts[depth])
    return None


def drop_old_versions(layout: StoreLayout, index: str, keep: int, report: GcReport) -> None:
    if is_locked(index_run_lock_path(layout, index)) or is_locked(layout.index_dir(index) / ".lock"):
        _skip(report, layout, layout.index_dir(index), f"index {index} is being written")
        return
    versions = list_versions(layout, index)
    current = current_version(layout, index)
    kept = set(versions[-keep:]) | ({current} if current is not None else set())
    for version in versions:
        if version not in kept:
            _remove(report, layout, layout.index_version_dir(index, version), f"older than the newest {keep} versions")


def kept_code_runs(layout: StoreLayout, dropped: set[str]) -> set[str]:
    """Code runs that index versions reference, leaving out versions in ``dropped`` (a dry run keeps them)."""
    referenced = set()
    for manifest_path in (layout.root / "index").glob("*/v*/manifest.json"):
        if str(manifest_path.parent.relative_to(layout.root)) in dropped:
            continue
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError):
            continue
        referenced |= {entry.get("codes_run", "") for entry in manifest.get("collections", {}).values()}
    return referenced


def drop_unreferenced_code_runs(layout: StoreLayout, report: GcReport) -> None:
    referenced = kept_code_runs(layout, {item["path"] for item in report.removed})
    for set_dir in sorted((layout.root / "codes").glob("*/*")):
        collection = set_dir.name
        if is_locked(collection_lock_path(layout, collection)):
            _skip(report, layout, set_dir, f"collection {collection} is being written")
            continue
        for run_dir, _ in committed_runs(set_dir)[1:]:  # the newest run of each set always stays
            if str(run_dir.relative_to(layout.root)) not in referenced:
                _remove(report, layout, run_dir, "no kept index version uses these codes")


def _skip(report: GcReport, layout: StoreLayout, path: Path, reason: str) -> None:
    report.skipped.append({"path": str(path.relative_to(layout.root)), "bytes": size_of(path), "reason": reason})


def _remove(report: GcReport, layout: StoreLayout, path: Path, reason: str) -> None:
    size = size_of(path)
    report.removed.append({"path": str(path.relative_to(layout.root)), "bytes": size, "reason": reason})
    report.freed_bytes += size
    if report.dry_run:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
