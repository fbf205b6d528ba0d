"""``reelhash gc``: delete what no committed manifest or kept index version needs, never what a writer is using.

What is removed:
- leftovers of killed writers: ``.tmp-*`` files and directories; ``run-*`` directories without a
  ``_MANIFEST.json`` and parts of committed runs that their manifest does not list; index versions without a
  ``manifest.json``; model versions without a ``config.json`` (docs/architecture.md, "Commit protocol");
- with ``keep_versions=N``: index versions older than the newest N of each index (never the one ``CURRENT``
  names), and then code runs that no kept version of any index references and that are not the newest run of
  their set (they can be re-hashed from cached features).

What is never removed: ``CURRENT``, catalogs, cached features and clips, models (a version may be pinned by an
index elsewhere or be the one a user will publish next), registry and locks.

Locks: a leftover under an index or a collection is removed only when that index's or collection's lock is free
(the writer is gone); leftovers that no lock covers (model versions) only when older than ``grace_seconds``.
Whatever is held is reported as skipped.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

from pipeline.locks import collection_lock_path, index_run_lock_path, is_locked
from pipeline.publish import VERSION_PATTERN, current_version, list_versions
from pipeline.shards import MANIFEST_NAME, committed_runs
from pipeline.store import (
    TEMP_PREFIX,
    StoreLayout,
    StorePath,
    holds_files,
    is_local,
    read_json,
    remove_tree,
    tree_mtime,
    tree_size,
    walk,
)

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


PART_PATTERN = re.compile(r"^part-.*\.parquet$")


def collect_garbage(layout: StoreLayout, *, keep_versions: int | None = None, dry_run: bool = False,
                    grace_seconds: float = GRACE_SECONDS) -> GcReport:
    if keep_versions is not None and keep_versions < 1:
        raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
    report = GcReport(dry_run=dry_run)
    if not layout.root.exists():
        return report
    for path in sorted(leftovers(layout.root)):
        busy = holder_lock(layout, path)
        if busy is not None and is_locked(busy):
            _skip(report, layout, path, f"{busy.name} is held by a running writer")
        elif busy is None and time.time() - tree_mtime(path) < grace_seconds:
            _skip(report, layout, path, f"younger than {grace_seconds:.0f} s and no lock covers it")
        else:
            _remove(report, layout, path, "left by a writer that did not finish")
    if keep_versions is not None:
        for index_dir in sorted(p for p in layout.area("index").glob("*") if p.is_dir()):
            drop_old_versions(layout, index_dir.name, keep_versions, report)
        drop_unreferenced_code_runs(layout, report)
    return report


def leftovers(root: StorePath) -> list[StorePath]:
    found = []
    for directory, dirnames, filenames in walk(root):
        depth = len(layout_parts(root, directory))
        for name in list(dirnames):
            path = directory / name
            uncommitted = (
                name.startswith(TEMP_PREFIX)
                or (name.startswith("run-") and MANIFEST_NAME not in _names(path))
                or (depth == 2 and _area(root, directory) == "index" and VERSION_PATTERN.match(name)
                    and "manifest.json" not in _names(path))
                or (depth == 1 and _area(root, directory) == "models" and not name.startswith("_")
                    and "config.json" not in _names(path))
            )
            if uncommitted and (is_local(path) or holds_files(path)):
                # (some object stores keep a "directory" entry after its objects are gone: nothing to remove)
                found.append(path)
                dirnames.remove(name)  # its content goes with it
        found += [directory / name for name in filenames if name.startswith(TEMP_PREFIX)]
        if directory.name.startswith("run-") and MANIFEST_NAME in filenames:
            found += _unlisted_parts(directory, filenames)
    return found


def layout_parts(root: StorePath, path: StorePath) -> list[str]:
    """The components of ``path`` below ``root``."""
    relative = StoreLayout(root).relative(path)
    return relative.split("/") if relative else []


def _area(root: StorePath, directory: StorePath) -> str:
    parts = layout_parts(root, directory)
    return parts[0] if parts else ""


def _names(directory: StorePath) -> set[str]:
    return {path.name for path in directory.iterdir()} if directory.exists() else set()


def _unlisted_parts(run_dir: StorePath, filenames: list[str]) -> list[StorePath]:
    """Parts in a committed run directory that its manifest does not list (a losing or killed writer's)."""
    try:
        listed = {item["file"] for item in read_json(run_dir / MANIFEST_NAME).get("files", [])}
    except (OSError, ValueError, AttributeError):
        return []
    return [run_dir / name for name in filenames if PART_PATTERN.match(name) and name not in listed]


def holder_lock(layout: StoreLayout, path: StorePath) -> StorePath | None:
    """The lock a writer of ``path`` holds while writing it (None: no lock covers it)."""
    parts = layout_parts(layout.root, path)
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
    for manifest_path in layout.area("index").glob("*/v*/manifest.json"):
        if layout.relative(manifest_path.parent) in dropped:
            continue
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError):
            continue
        referenced |= {entry.get("codes_run", "") for entry in manifest.get("collections", {}).values()}
    return referenced


def drop_unreferenced_code_runs(layout: StoreLayout, report: GcReport) -> None:
    referenced = kept_code_runs(layout, {item["path"] for item in report.removed})
    for set_dir in sorted(layout.area("codes").glob("*/*")):
        collection = set_dir.name
        if is_locked(collection_lock_path(layout, collection)):
            _skip(report, layout, set_dir, f"collection {collection} is being written")
            continue
        for run_dir, _ in committed_runs(set_dir)[1:]:  # the newest run of each set always stays
            if layout.relative(run_dir) not in referenced:
                _remove(report, layout, run_dir, "no kept index version uses these codes")


def _skip(report: GcReport, layout: StoreLayout, path: StorePath, reason: str) -> None:
    report.skipped.append({"path": layout.relative(path), "bytes": tree_size(path),
                           "reason": reason})


def _remove(report: GcReport, layout: StoreLayout, path: StorePath, reason: str) -> None:
    size = tree_size(path)
    report.removed.append({"path": layout.relative(path), "bytes": size, "reason": reason})
    report.freed_bytes += size
    if not report.dry_run:
        remove_tree(path)
