"""Publish searchable index versions: ``index/<name>/v<N>/`` + an atomically replaced ``CURRENT`` pointer.

A version holds faiss binary index shards (``shard-00000.faissbin``), their id tables
(``shard-00000.ids.parquet``: row → video, clip time range, uri, caption, code) and ``manifest.json``
(version, model, bits, counts, metrics, checksums). Its files are written under a version number no one has used
(under the index's write lock), ``manifest.json`` last and exclusively: a version without a manifest does not exist
for readers. Only then is it named by ``CURRENT`` (one atomic write). Readers resolve ``CURRENT`` once, so a
search never sees half a version; nothing is renamed, so this holds in object stores too. Earlier versions are
kept for rollback.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from hashing.bits import codes_from_arrow
from hashing.index import BinaryIndexConfig, BinaryIndexShard
from pipeline.errors import CorruptStoreError
from pipeline.failpoints import crash_point
from pipeline.locks import index_write_lock
from pipeline.shards import content_key
from pipeline.thumbnails import PACK_NAME, ClipThumbnail, thumbnail_columns, write_thumbnail_pack
from pipeline.store import (
    StoreLayout,
    StorePath,
    atomic_write_parquet,
    atomic_write_text,
    create_exclusive_json,
    file_sha256,
    read_json,
    read_parquet,
    remove_tree,
)

FORMAT_VERSION = 1
VERSION_PATTERN = re.compile(r"^v(\d+)$")


class IndexNotFoundError(LookupError):
    """No published version of an index exists (or its files are incomplete)."""


@dataclass
class CollectionCodes:
    """One collection's committed code rows joined with its catalog, ready to publish."""

    collection: str
    codes_run: str
    table: pa.Table  # video_id, clip_idx, t_start, t_end, code, uri, caption, labels


@dataclass
class PublishResult:
    version: int
    version_dir: StorePath
    published: bool
    manifest: dict


def with_catalog_columns(codes: pa.Table, catalog: pa.Table) -> pa.Table:
    """Code rows plus each video's uri, caption and labels (what a search result shows)."""
    info = {row["video_id"]: row for row in catalog.select(["video_id", "uri", "caption", "labels"]).to_pylist()}
    video_ids = codes["video_id"].to_pylist()
    missing: dict = {"uri": None, "caption": None, "labels": None}
    rows = [info.get(vid, missing) for vid in video_ids]
    return (
        codes.append_column("uri", pa.array([r["uri"] for r in rows], pa.string()))
        .append_column("caption", pa.array([r["caption"] for r in rows], pa.string()))
        .append_column("labels", pa.array([r["labels"] for r in rows], pa.list_(pa.string())))
        .sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    )


def list_versions(layout: StoreLayout, name: str) -> list[int]:
    directory = layout.index_dir(name)
    if not directory.exists():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := VERSION_PATTERN.match(p.name)) and p.is_dir())


def current_version(layout: StoreLayout, name: str) -> int | None:
    pointer = layout.current_pointer(name)
    if not pointer.exists():
        return None
    match = VERSION_PATTERN.match(pointer.read_text().strip())
    if not match:
        raise CorruptStoreError(f"{pointer} is corrupt (expected a line like 'v3'); run 'reelhash rollback --index "
                                f"{name} --to vN' or re-index")
    return int(match.group(1))


def read_current_manifest(layout: StoreLayout, name: str) -> tuple[int, StorePath, dict]:
    """Resolve CURRENT once and return (version, version_dir, manifest)."""
    version = current_version(layout, name)
    if version is None:
        known = layout.index_names()
        hint = f" Published indexes: {', '.join(known)}." if known else ""
        raise IndexNotFoundError(
            f"index '{name}' has no published version under {layout.root}. "
            f"Run 'reelhash index SOURCE --collection NAME --index {name}' first.{hint}"
        )
    version_dir = layout.index_version_dir(name, version)
    manifest_path = version_dir / "manifest.json"
    if not manifest_path.exists():
        raise CorruptStoreError(f"{manifest_path} is missing: the published version is incomplete; "
                                f"{recovery_advice(name)}")
    try:
        manifest = read_json(manifest_path)
    except ValueError as error:
        raise CorruptStoreError(f"{str(error).split(';')[0]}; {recovery_advice(name)}") from None
    missing = [key for key in MANIFEST_KEYS if not isinstance(manifest, dict) or key not in manifest]
    missing += [f"shards[{i}].{key}" for i, shard in enumerate(manifest.get("shards") or [] if not missing else [])
                for key in SHARD_KEYS if not isinstance(shard, dict) or key not in shard]
    if missing:
        raise CorruptStoreError(f"{manifest_path} is corrupt: it lacks {', '.join(missing)}; {recovery_advice(name)}")
    return version, version_dir, manifest


MANIFEST_KEYS = ("version", "model_id", "code_bits", "collections", "counts", "metrics", "shards")
SHARD_KEYS = ("index_file", "ids_file", "rows", "sha256")


def recovery_advice(name: str) -> str:
    return (f"run 'reelhash rollback --index {name}' to serve the previous version, or re-index to publish a new "
            "one ('reelhash eval --verify' lists what is damaged)")


def publish_index(
    layout: StoreLayout,
    name: str,
    *,
    model_id: str,
    code_bits: int,
    collections: list[CollectionCodes],
    metrics: dict,
    model_info: dict,
    shard_rows: int = 1_000_000,
    thumbnails: dict[str, Iterable[ClipThumbnail]] | None = None,
    index_config: BinaryIndexConfig | None = None,
) -> PublishResult:
    """Write a new version from the given collections and point CURRENT at it (skipped if unchanged).

    ``index_config`` chooses the faiss index of the shards by the version's size (flat, exact, by default up
    to 2M codes; IVF above).

    ``thumbnails`` (collection → (video_id, clip_idx, JPEG)) are packed into the version for the clips it holds.
    """
    key = content_key([model_id] + sorted(f"{c.collection}:{c.codes_run}" for c in collections))
    with index_write_lock(layout, name):
        if (current := current_version(layout, name)) is not None:
            _, version_dir, manifest = read_current_manifest(layout, name)
            if manifest.get("content_key") == key:
                return PublishResult(current, version_dir, False, manifest)
        versions = list_versions(layout, name)
        newest = versions[-1] if versions else None
        if newest is not None and newest != current and (layout.index_version_dir(name, newest) / "manifest.json").exists():
            # A complete version that never became CURRENT (the publisher died between the two steps): when it
            # holds exactly this content, finishing its publish gives what an uninterrupted run would have.
            manifest = read_json(layout.index_version_dir(name, newest) / "manifest.json")
            if isinstance(manifest, dict) and manifest.get("content_key") == key:
                set_current(layout, name, newest)
                return PublishResult(newest, layout.index_version_dir(name, newest), True, manifest)
        # Every version directory counts, committed or not: a publisher killed halfway left files under its
        # number, and a new version must not mix with them.
        version = max(versions, default=0) + 1
        final_dir = layout.index_version_dir(name, version)
        try:
            manifest = _write_version(
                final_dir, name=name, version=version, key=key, model_id=model_id, code_bits=code_bits,
                collections=collections, metrics=metrics, model_info=model_info, shard_rows=shard_rows,
                thumbnails=thumbnails or {}, index_config=index_config or BinaryIndexConfig(),
            )
        except BaseException:
            remove_tree(final_dir)
            raise
        crash_point("publish.version_written")
        set_current(layout, name, version)
        return PublishResult(version, final_dir, True, manifest)


def set_current(layout: StoreLayout, name: str, version: int) -> None:
    """Atomically point CURRENT at an existing, complete version."""
    version_dir = layout.index_version_dir(name, version)
    if not (version_dir / "manifest.json").exists():
        raise IndexNotFoundError(f"version v{version} of index '{name}' does not exist or is incomplete")
    atomic_write_text(layout.current_pointer(name), f"v{version}\n")


def _write_version(
    directory: StorePath, *, name: str, version: int, key: str, model_id: str, code_bits: int,
    collections: list[CollectionCodes], metrics: dict, model_info: dict, shard_rows: int,
    thumbnails: dict[str, Iterable[ClipThumbnail]], index_config: BinaryIndexConfig,
) -> dict:
    tables = [c.table.drop_columns([n for n in ("thumb_offset", "thumb_length") if n in c.table.column_names])
              .append_column("collection", pa.array([c.collection] * c.table.num_rows, pa.string()))
              for c in collections]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    pack = None
    if table is not None and thumbnails:
        keep = {c.collection: set(zip(c.table["video_id"].to_pylist(), c.table["clip_idx"].to_pylist()))
                for c in collections}
        offsets, pack = write_thumbnail_pack(directory / PACK_NAME, thumbnails, keep)
        table = thumbnail_columns(table, offsets)
    shards = []
    kind = index_config.kind_for(table.num_rows if table is not None else 0)
    if table is not None:
        for shard_no, offset in enumerate(range(0, table.num_rows, shard_rows)):
            part = table.slice(offset, shard_rows)
            index_file = directory / f"shard-{shard_no:05d}.faissbin"
            ids_file = directory / f"shard-{shard_no:05d}.ids.parquet"
            shard = BinaryIndexShard.build(codes_from_arrow(part["code"]), kind, index_config)
            shard.save(index_file)
            atomic_write_parquet(ids_file, part)
            shards.append(
                {
                    "index_file": index_file.name,
                    "ids_file": ids_file.name,
                    "rows": part.num_rows,
                    "index_kind": shard.kind,
                    **({"nprobe": shard.nprobe} if shard.nprobe is not None else {}),
                    "sha256": {index_file.name: file_sha256(index_file), ids_file.name: file_sha256(ids_file)},
                }
            )
    manifest = {
        "format_version": FORMAT_VERSION,
        "index": name,
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "content_key": key,
        "model_id": model_id,
        "code_bits": code_bits,
        "model": model_info,
        "collections": {
            c.collection: {
                "codes_run": c.codes_run,
                "videos": len(set(c.table["video_id"].to_pylist())),
                "clips": c.table.num_rows,
            }
            for c in collections
        },
        "counts": {
            "clips": table.num_rows if table is not None else 0,
            "videos": sum(len(set(c.table["video_id"].to_pylist())) for c in collections),
            "shards": len(shards),
        },
        "metrics": metrics,
        # nprobe: the most lists any shard scans (a small shard has fewer lists than the configured nprobe)
        "search_index": {"kind": kind, "exact": all(s["index_kind"] == "flat" for s in shards),
                         **({"nprobe": max(s.get("nprobe", 0) for s in shards)} if kind == "ivf" and shards else {})},
        "shards": shards,
        "thumbnails": pack,
    }
    if not create_exclusive_json(directory / "manifest.json", manifest):
        raise CorruptStoreError(f"{directory} was committed by another writer while this one wrote it: two publishers "
                                "ran without the index's write lock (a lock that does not reach across machines?)")
    return manifest


def verify_version(version_dir: StorePath, manifest: dict) -> list[str]:
    """Checksum mismatches or missing files of a published version (empty when intact)."""
    problems = []
    checksums = [item for shard in manifest.get("shards", []) for item in shard["sha256"].items()]
    if manifest.get("thumbnails"):
        checksums.append((manifest["thumbnails"]["file"], manifest["thumbnails"]["sha256"]))
    for file_name, expected in checksums:
        path = version_dir / file_name
        if not path.exists():
            problems.append(f"missing {path}")
        elif file_sha256(path) != expected:
            problems.append(f"checksum mismatch {path}")
    return problems


HIGHER_IS_BETTER = ("R@1", "R@5", "R@10", "mAP@all")


def quality_regressions(published: dict, candidate: dict, tolerance: float, min_videos: int = 20) -> list[str]:
    """Hash-ranking metrics (higher is better, present in both) that fell by more than ``tolerance`` × published.

    Only the hash ranking is gated: it is what the model is responsible for (the float ranking moves with the
    data). Evaluation sets smaller than ``min_videos`` are too noisy to gate on and pass.
    """
    if min(published.get("eval_videos", 0), candidate.get("eval_videos", 0)) < min_videos:
        return []
    problems = []
    for key, old in sorted(published.items()):
        new = candidate.get(key)
        if ".hash." not in key or not key.endswith(HIGHER_IS_BETTER):
            continue
        if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
            continue
        if new < old * (1.0 - tolerance) - 1e-12:
            problems.append(f"{key}: {new:.4g} < published {old:.4g} (tolerance {tolerance:.0%})")
    return problems


def rows_of_collection(version_dir: StorePath, manifest: dict, collection: str) -> pa.Table:
    """The id-table rows (codes, uris, captions…) of one collection in a published version."""
    tables = []
    for shard in manifest["shards"]:
        table = read_parquet(version_dir / shard["ids_file"])
        mask = pa.compute.equal(table["collection"], collection)
        tables.append(table.filter(mask).drop_columns(["collection"]))
    if not tables:
        raise IndexNotFoundError(f"{version_dir} has no shards")
    return pa.concat_tables(tables)


def rollback(layout: StoreLayout, name: str, to_version: int | None = None) -> tuple[int, int]:
    """Point CURRENT at an earlier complete version (default: the one before the current); returns (from, to)."""
    with index_write_lock(layout, name):
        current = current_version(layout, name)
        if current is None:
            raise IndexNotFoundError(f"index '{name}' has no published version to roll back")
        versions = [v for v in list_versions(layout, name) if (layout.index_version_dir(name, v) / "manifest.json").exists()]
        if to_version is None:
            earlier = [v for v in versions if v < current]
            if not earlier:
                raise IndexNotFoundError(f"index '{name}' is at v{current}, its first version; there is nothing to roll back to")
            to_version = earlier[-1]
        if to_version not in versions:
            raise IndexNotFoundError(f"index '{name}' has no complete version v{to_version}; versions: "
                                     + ", ".join(f"v{v}" for v in versions))
        set_current(layout, name, to_version)
        return current, to_version
