"""The catalog: one row per media file of a collection, with identity, fingerprint and probe info.

``discover`` lists a collection (directory, glob pattern, or manifest). ``catalog_row`` turns one
entry into one row and never raises: every problem becomes ``status="failed"`` with a one-line
``error``. It is a pure function of one entry (plus the previous row of the same video), so the
data plane can call it per file inside Ray tasks. Catalog tables are written as immutable
timestamped Parquet files; the ``LATEST`` pointer names the committed one.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import math
import os
import posixpath
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from pipeline.decode import DecodeError, probe_video
from pipeline.store import (
    StoreLayout,
    StorePath,
    as_path,
    atomic_write_json,
    atomic_write_parquet,
    is_local,
    is_uri,
    local_file,
    read_json,
    read_parquet,
)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
MANIFEST_EXTENSIONS = frozenset({".parquet", ".csv"})
GLOB_CHARACTERS = frozenset("*?[")

FINGERPRINT_EDGE_BYTES = 1 << 20  # hash the first and last MiB of each file
MAX_ERROR_CHARS = 500
LATEST_POINTER = "LATEST"
# Status of a file that was in the previous catalog but is gone now (a tombstone: left out of the index).
DELETED = "deleted"

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("collection", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        # Every caption of the item, ``caption`` first (a manifest's ``captions`` column); null when it has only one.
        pa.field("captions", pa.list_(pa.string())),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("split", pa.string()),
        pa.field("media_kind", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("fingerprint", pa.string()),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("frame_count", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("cataloged_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
# Columns added after the first catalogs were written: older catalogs read with them all null.
LATER_COLUMNS = ("captions",)
PROBE_COLUMNS = ("duration_s", "fps", "width", "height", "frame_count")


@dataclass
class MediaEntry:
    """A discovered media file. ``uri`` is relative to the collection root (POSIX slashes)."""

    uri: str
    path: str
    caption: str | None = None
    labels: list[str] | None = None
    split: str | None = None
    captions: list[str] | None = None  # alternative captions, ``caption`` first (None: only ``caption``)


# ---------------------------------------------------------------- identity


def video_id(collection: str, uri: str) -> str:
    """Stable id of a file within a collection: the same file gets the same id on every run."""
    return hashlib.sha256(f"{collection}\0{uri}".encode("utf-8")).hexdigest()[:16]


def fingerprint(path: str) -> str:
    """``size-mtime_ns-hash`` of the first and last MiB; changes when the file changes.

    Raises ``OSError`` (e.g. ``FileNotFoundError``) when the file cannot be read.
    """
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        digest = hashlib.sha256()
        if stat.st_size <= 2 * FINGERPRINT_EDGE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(FINGERPRINT_EDGE_BYTES))
            handle.seek(-FINGERPRINT_EDGE_BYTES, os.SEEK_END)
            digest.update(handle.read(FINGERPRINT_EDGE_BYTES))
    return f"{stat.st_size}-{stat.st_mtime_ns}-{digest.hexdigest()[:16]}"


def media_kind(path_or_uri: str) -> str:
    """``"image"`` for still-image extensions, else ``"video"`` (the probe decides the rest)."""
    return "image" if Path(path_or_uri).suffix.lower() in IMAGE_EXTENSIONS else "video"


# ---------------------------------------------------------------- discovery


def discover(source: str) -> tuple[list[MediaEntry], str]:
    """List the media of a collection and describe what kind of source it was.

    ``source`` is a directory (searched recursively), a glob pattern (``**`` recurses), a
    ``.parquet``/``.csv`` manifest with a ``uri`` column, or a single media file. Hidden files and
    directories are skipped. Entries are sorted by ``uri``.
    """
    source = os.fspath(source)
    if not source.strip():
        raise ValueError("collection source is empty: give a directory, a glob pattern or a manifest")
    if is_uri(source):
        entries, description = _discover_objects(source)
        entries.sort(key=lambda entry: entry.uri)
        return entries, description
    path = Path(source).expanduser()
    # An existing path wins over glob interpretation: "clips [2020]" is a real directory name.
    if path.is_dir():
        entries, description = _discover_directory(path.resolve())
        entries, description = with_root_manifest(path.resolve(), entries, description)
    elif path.is_file():
        if path.suffix.lower() in MANIFEST_EXTENSIONS:
            entries, description = _discover_manifest(path.resolve())
        elif path.suffix.lower() in MEDIA_EXTENSIONS:
            resolved = path.resolve()
            entries = [MediaEntry(uri=resolved.name, path=str(resolved))]
            description = f"single media file {resolved}"
        else:
            raise ValueError(
                f"cannot catalog {source!r}: expected a directory, a glob pattern, a .parquet/.csv "
                f"manifest or a media file ({', '.join(sorted(MEDIA_EXTENSIONS))})"
            )
    elif any(char in GLOB_CHARACTERS for char in source):
        entries, description = _discover_glob(str(path))
    else:
        raise FileNotFoundError(
            f"collection source {source!r} does not exist: expected a directory, a glob pattern "
            "(e.g. 'videos/**/*.mp4'), or a .parquet/.csv manifest with a 'uri' column"
        )
    entries.sort(key=lambda entry: entry.uri)
    return entries, description


def media_location(source: str) -> StorePath:
    """Where a source, manifest or media file is: a local path (``~`` expanded) or an object URI."""
    return as_path(source) if is_uri(source) else Path(source).expanduser()


def absolute_source(source: str) -> str:
    """A source as the registry records it: absolute local paths (runs start elsewhere), URIs unchanged."""
    location = media_location(source)
    return str(location.resolve()) if is_local(location) and location.exists() else (
        str(location) if not is_local(location) else source)


def source_exists(source: str) -> bool:
    """Whether a source names something that exists (globs are checked when they are listed)."""
    if any(char in GLOB_CHARACTERS for char in source):
        return True
    location = media_location(source)
    try:
        return location.exists()
    except OSError:  # an unreachable or forbidden object store: the run will say what is wrong
        return True


def _discover_objects(source: str) -> tuple[list[MediaEntry], str]:
    """Media under an object-store prefix (``s3://bucket/news/``), matching a glob, or named by a manifest object."""
    root = as_path(source)
    if any(char in GLOB_CHARACTERS for char in root.path):
        names = sorted(root.fs.glob(root.path))
        base = root.path.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0]
        entries = _object_entries(root, base, names)
        if not entries:
            raise FileNotFoundError(f"glob pattern {source!r} matched no media objects; check the pattern")
        return entries, f"glob {source!r} ({len(entries)} media objects)"
    try:
        info = root.fs.info(root.path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"collection source {source!r} does not exist: expected an object prefix, a media object or a "
            ".parquet/.csv manifest object (check the bucket name and AWS_ENDPOINT_URL)"
        ) from None
    if info.get("type") == "directory":
        entries = _object_entries(root, root.path, sorted(root.fs.find(root.path)))
        return with_root_manifest(root, entries, f"object prefix {source} (recursive, {len(entries)} media objects)")
    if root.suffix.lower() in MANIFEST_EXTENSIONS:
        return _discover_manifest(root)
    if root.suffix.lower() in MEDIA_EXTENSIONS:
        return [MediaEntry(uri=root.name, path=str(root))], f"single media object {source}"
    raise ValueError(f"cannot catalog {source!r}: expected an object prefix, a .parquet/.csv manifest or a media "
                     f"object ({', '.join(sorted(MEDIA_EXTENSIONS))})")


def _object_entries(root: StorePath, base: str, names: list[str]) -> list[MediaEntry]:
    """Entries for object keys under ``base``: media extensions only, hidden components skipped."""
    protocol = str(root).split("://", 1)[0]
    entries = []
    for name in names:
        relative = name[len(base):].strip("/") if name.startswith(base) else name
        if not relative or not _is_media_file(relative) or any(part.startswith(".") for part in relative.split("/")):
            continue
        entries.append(MediaEntry(uri=relative, path=f"{protocol}://{name}"))
    return entries


def _is_media_file(name: str) -> bool:
    return Path(name).suffix.lower() in MEDIA_EXTENSIONS


def _discover_directory(root: Path) -> tuple[list[MediaEntry], str]:
    entries: list[MediaEntry] = []
    visited: set[tuple[int, int]] = set()  # (device, inode) of directories, against symlink loops
    for directory, dirnames, filenames in os.walk(root, followlinks=True):
        stat = os.stat(directory)
        if (stat.st_dev, stat.st_ino) in visited:
            dirnames[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in filenames:
            if name.startswith(".") or not _is_media_file(name):
                continue
            full = Path(directory) / name
            entries.append(MediaEntry(uri=full.relative_to(root).as_posix(), path=str(full)))
    return entries, f"directory {root} (recursive, {len(entries)} media files)"


# A manifest at the root of a source directory (``reelhash make-sample`` writes manifest.parquet) describes its files.
ROOT_MANIFEST_NAMES = ("manifest.parquet", "manifest.csv")


def with_root_manifest(root: StorePath, entries: list[MediaEntry], description: str) -> tuple[list[MediaEntry], str]:
    """Captions, labels and splits for a directory's files from a manifest at its root, when there is one.

    The directory stays the source of truth for which files exist: files the manifest does not list keep no
    caption, and manifest rows without a file are ignored. The description says which manifest was used, so a
    run's log shows why it was (or was not) evaluated.
    """
    manifest = next((root / name for name in ROOT_MANIFEST_NAMES if (root / name).is_file()), None)
    if manifest is None:
        return entries, description
    described = {entry.uri: entry for entry in _discover_manifest(manifest)[0]}
    merged = [replace(entry, caption=found.caption, captions=found.captions, labels=found.labels, split=found.split)
              if (found := described.get(entry.uri)) is not None else entry for entry in entries]
    matched = sum(entry.uri in described for entry in entries)
    return merged, f"{description}; captions and labels from {manifest} for {matched} of them"


def _split_glob_root(pattern: str) -> tuple[Path, str]:
    """Split a pattern into a literal existing root directory and the glob part below it.

    Components without glob characters, and components that exist literally (a directory named
    ``[2020]``), belong to the root; the first other component starts the pattern.
    """
    parts = Path(pattern).parts
    root = Path(parts[0]) if Path(pattern).is_absolute() else Path.cwd()
    index = 1 if Path(pattern).is_absolute() else 0
    while index < len(parts) - 1:
        part = parts[index]
        candidate = root / part
        if any(char in GLOB_CHARACTERS for char in part) and not candidate.is_dir():
            break
        root = candidate
        index += 1
    return root.resolve(), "/".join(parts[index:])


def _discover_glob(pattern: str) -> tuple[list[MediaEntry], str]:
    root, relative_pattern = _split_glob_root(pattern)
    if not root.is_dir():
        raise FileNotFoundError(
            f"glob pattern {pattern!r} cannot match anything: directory {root} does not exist"
        )
    # root_dir keeps brackets in the literal root from being read as character classes;
    # include_hidden=False (the default) skips hidden files and directories.
    matches = glob.glob(relative_pattern, root_dir=root, recursive=True)
    if not matches:
        raise FileNotFoundError(
            f"glob pattern {pattern!r} matched no files (searched under {root}); check the "
            "pattern, and use '**' to search subdirectories recursively"
        )
    entries = []
    for match in matches:
        full = root / match
        if not full.is_file() or not _is_media_file(match):
            continue
        relative = Path(posixpath.normpath(Path(match).as_posix()))
        if any(part.startswith(".") for part in relative.parts):
            continue
        entries.append(MediaEntry(uri=relative.as_posix(), path=str(full)))
    return entries, f"glob {pattern!r} under {root} ({len(entries)} media files)"


def _discover_manifest(manifest: StorePath) -> tuple[list[MediaEntry], str]:
    kind = manifest.suffix.lower().lstrip(".")
    records = _read_parquet_records(manifest) if kind == "parquet" else _read_csv_records(manifest)
    base = manifest.parent
    entries: list[MediaEntry] = []
    seen: set[str] = set()
    skipped_empty = duplicates = 0
    for record in records:
        raw_uri = _clean_text(record.get("uri"))
        if raw_uri is None:
            skipped_empty += 1
            continue
        uri, path = _resolve_manifest_uri(raw_uri, base)
        if uri in seen:
            duplicates += 1  # one row per file; the first row's metadata wins
            continue
        seen.add(uri)
        caption, captions = _parse_captions(record.get("caption"), record.get("captions"))
        entries.append(
            MediaEntry(
                uri=uri,
                path=path,
                caption=caption,
                labels=_parse_labels(record.get("labels")),
                split=_clean_text(record.get("split")),
                captions=captions,
            )
        )
    notes = [f"{len(entries)} entries"]
    if skipped_empty:
        notes.append(f"{skipped_empty} rows with an empty uri skipped")
    if duplicates:
        notes.append(f"{duplicates} duplicate uri rows ignored (first row kept)")
    return entries, f"{kind} manifest {manifest} ({', '.join(notes)})"


def _read_parquet_records(manifest: StorePath) -> list[dict[str, Any]]:
    try:
        table = read_parquet(manifest)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"cannot read parquet manifest {manifest}: {exc}") from None
    _require_uri_column(manifest, table.column_names)
    wanted = [name for name in ("uri", "caption", "captions", "labels", "split") if name in table.column_names]
    return table.select(wanted).to_pylist()


def _read_csv_records(manifest: StorePath) -> list[dict[str, Any]]:
    # utf-8-sig: spreadsheets often prepend a byte-order mark to the header.
    with manifest.open("r", newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        _require_uri_column(manifest, [name.strip() for name in reader.fieldnames or []])
        return [
            {(key or "").strip(): value for key, value in row.items() if key is not None}
            for row in reader
        ]


def _require_uri_column(manifest: Path, columns: list[str]) -> None:
    if "uri" not in columns:
        raise ValueError(
            f"manifest {manifest} has no 'uri' column (found columns: {columns}); "
            "add a 'uri' column with file paths relative to the manifest's directory or absolute"
        )


def _resolve_manifest_uri(raw_uri: str, base: StorePath) -> tuple[str, str]:
    """(uri, path) of a manifest value; relative uris are relative to the manifest's directory (or prefix)."""
    if raw_uri.startswith("file://"):
        raw_uri = raw_uri[len("file://") :]
    elif is_uri(raw_uri):
        # An object named in full: relative to the manifest's prefix when inside it (same uri and video_id as
        # when the prefix itself is the source), else the full URI.
        prefix = str(base).rstrip("/") + "/"
        return (raw_uri[len(prefix):] if raw_uri.startswith(prefix) else raw_uri), raw_uri
    if not is_local(base):
        uri = posixpath.normpath(raw_uri.lstrip("/"))
        return uri, str(base / uri)
    as_path = Path(raw_uri).expanduser()
    if as_path.is_absolute():
        full = Path(os.path.normpath(as_path))
        try:
            # Files inside the manifest's directory get the same uri (and video_id) as when the
            # directory itself is the source.
            return full.relative_to(base).as_posix(), str(full)
        except ValueError:
            return full.as_posix(), str(full)
    uri = posixpath.normpath(as_path.as_posix())
    return uri, str(Path(os.path.normpath(base / uri)))


def _clean_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _parse_labels(value: Any) -> list[str] | None:
    """Labels from a list, or from a string separated by '|' or ';'."""
    if isinstance(value, str):
        value = value.replace(";", "|")
    return _text_list(value)


def _parse_captions(caption: Any, captions: Any) -> tuple[str | None, list[str] | None]:
    """(caption, captions): the manifest's ``captions`` (a list, or a string separated by '|') with
    ``caption`` first and no repeats; the caption is the first of them when the row has none of its own.
    ``captions`` is None when the row has no more than one caption."""
    first = _clean_text(caption)
    alternatives = _text_list(captions) or []
    ordered = list(dict.fromkeys(([first] if first else []) + alternatives))
    return (ordered[0] if ordered else None), (ordered if len(ordered) > 1 else None)


def _text_list(value: Any) -> list[str] | None:
    """Non-empty cleaned strings from a list, or from a string separated by '|'; None if there are none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        items: Iterable[Any] = value.split("|")
    elif isinstance(value, Iterable):
        items = value
    else:
        items = [value]
    texts = [text for text in (_clean_text(item) for item in items) if text is not None]
    return texts or None


# ---------------------------------------------------------------- one catalog row


def catalog_row(entry: MediaEntry, collection: str, previous: dict | None = None) -> dict:
    """One catalog row for ``entry``; never raises.

    If ``previous`` (the last row of the same video_id) was ok and has the same fingerprint,
    its probe info is reused without opening the media. Failed rows carry zeros for the probe
    columns (and for size/mtime when the file could not even be stat'ed).
    """
    row: dict[str, Any] = {
        "video_id": video_id(collection, entry.uri),
        "collection": collection,
        "uri": entry.uri,
        "path": entry.path,
        "caption": entry.caption,
        "captions": list(entry.captions) if entry.captions is not None else None,
        "labels": list(entry.labels) if entry.labels is not None else None,
        "split": entry.split,
        "media_kind": media_kind(entry.path),
        "size_bytes": 0,
        "mtime_ns": 0,
        "fingerprint": None,
        "duration_s": 0.0,
        "fps": 0.0,
        "width": 0,
        "height": 0,
        "frame_count": 0,
        "status": "failed",
        "error": None,
        "cataloged_at": datetime.now(timezone.utc),
    }
    try:
        _fill_file_and_probe(row, entry.path, previous)
        row["status"] = "ok"
    except Exception as exc:  # every failure is data: the row records it, the run goes on
        row["error"] = _describe_failure(exc, entry.path)
    return row


class _CatalogFailure(Exception):
    """A failure whose message is already the one-line error for the row."""


def object_fingerprint(info: dict) -> tuple[int, int, str]:
    """(size, mtime_ns, fingerprint) of an object from its metadata: ``size-etag`` (the ETag changes with the
    content), so an unchanged object is recognised without reading it."""
    size = int(info.get("size") or 0)
    modified = info.get("LastModified") or info.get("mtime")
    mtime_ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else 0
    etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or mtime_ns).strip('"')
    return size, mtime_ns, f"{size}-{etag}"


def _fill_object_and_probe(row: dict[str, Any], path: str, previous: dict | None) -> None:
    location = as_path(path)
    try:
        info = location.fs.info(location.path)
    except FileNotFoundError:
        raise _CatalogFailure(f"missing object: {path}") from None
    if info.get("type") != "file":
        raise _CatalogFailure(f"not an object (a prefix?): {path}")
    row["size_bytes"], row["mtime_ns"], row["fingerprint"] = object_fingerprint(info)
    if row["size_bytes"] == 0:
        raise _CatalogFailure("empty file (0 bytes)")
    if not _reuse_probe(row, previous):
        with local_file(location) as local:  # decoders need a seekable local file
            _probe(row, str(local))
    _normalise_probe_types(row)


def _reuse_probe(row: dict[str, Any], previous: dict | None) -> bool:
    if (
        previous is not None
        and previous.get("status") == "ok"
        and previous.get("fingerprint") == row["fingerprint"]
        and all(previous.get(column) is not None for column in PROBE_COLUMNS)
    ):
        for column in PROBE_COLUMNS:
            row[column] = previous[column]
        return True
    return False


def _probe(row: dict[str, Any], path: str) -> None:
    if row["media_kind"] == "image":
        row.update(_probe_image(path))
        return
    info = probe_video(path)
    if info.frame_count <= 0 or info.width <= 0 or info.height <= 0:
        raise _CatalogFailure(
            f"no decodable video frames ({info.width}x{info.height}, {info.frame_count} frames)"
        )
    row.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
               frame_count=info.frame_count)


def _normalise_probe_types(row: dict[str, Any]) -> None:
    # Previous rows may come back from Arrow/pandas as numpy scalars.
    for column in ("duration_s", "fps"):
        row[column] = float(row[column])
    for column in ("width", "height", "frame_count"):
        row[column] = int(row[column])


def _fill_file_and_probe(row: dict[str, Any], path: str, previous: dict | None) -> None:
    if is_uri(path):
        _fill_object_and_probe(row, path, previous)
        return
    stat = os.stat(path)
    row["size_bytes"] = stat.st_size
    row["mtime_ns"] = stat.st_mtime_ns
    if not Path(path).is_file():
        raise _CatalogFailure(f"not a regular file: {path}")
    if stat.st_size == 0:
        raise _CatalogFailure("empty file (0 bytes)")
    row["fingerprint"] = fingerprint(path)
    if not _reuse_probe(row, previous):
        _probe(row, path)
    _normalise_probe_types(row)


def _probe_image(path: str) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError  # images are rare; keep PIL off the import path

    try:
        with Image.open(path) as image:
            image.load()  # decode fully, so truncated images fail here rather than mid-pipeline
            width, height = image.size
    except UnidentifiedImageError:
        raise _CatalogFailure("not an image file: the image format was not recognised") from None
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:  # PIL reports truncated or corrupt image data as OSError
        raise _CatalogFailure(f"corrupt image file: {exc}") from None
    return {"duration_s": 0.0, "fps": 0.0, "width": width, "height": height, "frame_count": 1}


def _describe_failure(exc: Exception, path: str) -> str:
    if isinstance(exc, (_CatalogFailure, DecodeError)):
        message = str(exc)
    elif isinstance(exc, FileNotFoundError):
        message = f"missing file: {path}"
    elif isinstance(exc, PermissionError):
        message = f"permission denied: {path}"
    elif isinstance(exc, IsADirectoryError):
        message = f"not a regular file: {path}"
    elif isinstance(exc, OSError):
        message = f"cannot read file: {exc.strerror or exc}"
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
    return _one_line(message)


def _one_line(message: str) -> str:
    text = " ".join(message.split()) or "unknown error"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# ---------------------------------------------------------------- tables


def all_captions(row: dict) -> list[str]:
    """Every caption of a catalog row, ``caption`` first (``captions`` is null when there is only one)."""
    return list(row.get("captions") or [row["caption"]])


def rows_to_table(rows: Iterable[dict]) -> pa.Table:
    """Rows from ``catalog_row`` as a table with ``CATALOG_SCHEMA``."""
    table = pa.Table.from_pylist(list(rows), schema=CATALOG_SCHEMA)
    _check_required_columns(table, "catalog rows")
    return table


def _check_required_columns(table: pa.Table, where: str) -> None:
    # Arrow does not enforce nullable=False when building tables; a null here is a bug upstream.
    for field in CATALOG_SCHEMA:
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"{where}: column {field.name!r} must not contain nulls")


def previous_rows_by_id(table: pa.Table | None) -> dict[str, dict]:
    """Rows of a catalog keyed by video_id (input for the next run's ``catalog_row``)."""
    if table is None:
        return {}
    return {row["video_id"]: row for row in table.to_pylist()}


def catalog_summary(table: pa.Table) -> dict[str, Any]:
    """Counts for reports and the failure-rate check, plus ``failures``: [(uri, error), ...]."""
    rows = [row for row in table.select(["uri", "status", "error", "media_kind"]).to_pylist()
            if row["status"] != DELETED]
    total = len(rows)
    failures = [(row["uri"], row["error"]) for row in rows if row["status"] != "ok"]
    return {
        "total": total,
        "ok": total - len(failures),
        "failed": len(failures),
        "videos": sum(1 for row in rows if row["media_kind"] == "video"),
        "images": sum(1 for row in rows if row["media_kind"] == "image"),
        "failure_rate": len(failures) / total if total else 0.0,
        "deleted": table.num_rows - total,
        "failures": failures,
    }


def _conform_to_schema(table: pa.Table, where: str) -> pa.Table:
    for name in LATER_COLUMNS:
        if name not in table.column_names:
            field = CATALOG_SCHEMA.field(name)
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    missing = [name for name in CATALOG_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{where} is not a catalog table: missing columns {missing}")
    try:
        table = table.select(CATALOG_SCHEMA.names).cast(CATALOG_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ValueError(f"{where} does not match the catalog schema: {exc}") from None
    _check_required_columns(table, where)
    return table


def write_catalog(layout: StoreLayout, collection: str, table: pa.Table) -> Path:
    """Write a new catalog version, then point ``LATEST`` at it. Older versions are kept."""
    table = _conform_to_schema(table, "the table to write")
    directory = layout.catalog_dir(collection)
    now = datetime.now(timezone.utc)
    # Sortable UTC timestamp + short uuid: concurrent or same-microsecond writes never collide.
    name = f"catalog-{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.parquet"
    path = atomic_write_parquet(directory / name, table)
    atomic_write_json(
        directory / LATEST_POINTER,
        {
            "catalog": name,
            "collection": collection,
            "rows": table.num_rows,
            "written_at": now.isoformat(),
        },
    )
    return path


def read_catalog(layout: StoreLayout, collection: str) -> pa.Table | None:
    """The catalog named by ``LATEST``, or ``None`` when the collection was never cataloged."""
    directory = layout.catalog_dir(collection)
    pointer_path = directory / LATEST_POINTER
    if not pointer_path.exists():
        return None
    pointer = read_json(pointer_path)
    name = pointer.get("catalog") if isinstance(pointer, dict) else None
    if not isinstance(name, str) or "/" in name or not name:
        raise ValueError(f"corrupt catalog pointer {pointer_path}: no valid 'catalog' file name")
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(
            f"catalog pointer {pointer_path} names {name}, which does not exist; re-run the "
            "catalog step to write a fresh catalog"
        )
    return _conform_to_schema(read_parquet(path), str(path))
