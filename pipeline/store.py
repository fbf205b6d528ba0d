"""The store: where everything lives under one root, and how files get there atomically.

The root is a local directory or an object-store URI (``s3://bucket/prefix``); every location below is a
``pathlib.Path`` or a ``upath.UPath`` made by ``hashing/files.as_path``, and every read and write goes through
the helpers here and in ``hashing/files.py`` (docs/architecture.md, "Object stores").

Layout (see ``docs/architecture.md``, "Design")::

    <root>/catalog/<collection>/                  catalog tables + LATEST pointer
    <root>/features/<encoder_id>/<collection>/    clip embeddings
    <root>/models/<model_id>/                     config.json, weights.safetensors, metrics.json
    <root>/codes/<model_id>/<collection>/         code shards + _MANIFEST.json
    <root>/index/<name>/v<N>/                     a published index version
    <root>/index/<name>/CURRENT                   names the published version
    <root>/reports/<run_id>/                      metrics, report, plots
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hashing.files import (  # noqa: F401  (the store's helpers)
    TEMP_PREFIX,
    StorePath,
    as_path,
    atomic_output_path,
    atomic_write_bytes,
    create_exclusive,
    file_sha256,
    holds_files,
    is_local,
    is_uri,
    local_file,
    make_directory,
    read_range,
    object_etag,
    remove_tree,
    replace_if_unchanged,
    tree_mtime,
    tree_size,
    upload_directory,
    walk,
)

STORE_ENV_VAR = "REELHASH_STORE"
STORE_AREAS = ("catalog", "features", "clips", "models", "codes", "index", "reports", "locks")
DEFAULT_STORE_ROOT = "./reelhash-data"

# One path component: no separators, no leading dot (hidden / "..") and a bounded length.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = (
    "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
)



def validate_name(value: str, kind: str) -> str:
    """Return ``value`` if it is a safe single path component for a ``kind`` name."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise ValueError(f"invalid {kind} name {value!r}: use {NAME_RULE}")
    return value


@dataclass(frozen=True)
class StoreLayout:
    """Locations of the store under ``root`` (a local directory or an object-store URI); nothing is created here."""

    root: StorePath

    def __post_init__(self) -> None:
        root = as_path(self.root) if not isinstance(self.root, str) or is_uri(self.root) else Path(self.root)
        if is_local(root):
            # Always hold an absolute path so paths survive a change of working directory
            # (Ray workers do not share the driver's cwd).
            root = Path(root).expanduser().resolve()
        object.__setattr__(self, "root", root)

    @property
    def is_local(self) -> bool:
        return is_local(self.root)

    def relative(self, path: StorePath | str) -> str:
        """``path`` below the root, '/'-separated (how manifests name store locations, so a store can move)."""
        text, root = str(as_path(path) if not isinstance(path, str) else as_path(path)), str(self.root)
        if text != root and not text.startswith(root.rstrip("/") + "/"):
            raise ValueError(f"{text} is not inside the store {root}")
        return text[len(root):].strip("/")

    def location(self, relative_or_absolute: StorePath | str) -> StorePath:
        """A location named relative to the root (as manifests record it), or already absolute."""
        text = str(relative_or_absolute)
        if is_uri(text) or os.path.isabs(text):
            return as_path(text)
        return self.root / text if text else self.root

    @property
    def uri(self) -> str:
        """The root as text that ``StoreLayout(...)`` accepts again (a path or a URI)."""
        return str(self.root)

    @classmethod
    def from_option(cls, value: str | os.PathLike[str] | None = None) -> StoreLayout:
        """The store named by ``value``, else ``$REELHASH_STORE``, else ``./reelhash-data``."""
        chosen = value if value not in (None, "") else os.environ.get(STORE_ENV_VAR) or None
        return cls(as_path(os.fspath(chosen) if chosen is not None else DEFAULT_STORE_ROOT))

    def catalog_dir(self, collection: str) -> StorePath:
        return self.area("catalog") / validate_name(collection, "collection")

    def features_dir(self, encoder_id: str, collection: str) -> StorePath:
        return (
            self.area("features")
            / validate_name(encoder_id, "encoder")
            / validate_name(collection, "collection")
        )

    def area(self, name: str) -> StorePath:
        """A top-level area of the store: ``catalog``, ``features``, ``clips``, ``models``, ``codes``, ``index``,
        ``reports`` or ``locks``."""
        if name not in STORE_AREAS:
            raise ValueError(f"unknown store area {name!r}; one of {', '.join(STORE_AREAS)}")
        return self.root / name

    def clip_cache_dir(self, tag: str, collection: str) -> StorePath:
        """``clips/<sampling and geometry tag>/<collection>``: decoded clips for training."""
        return self.area("clips") / validate_name(tag, "clip cache") / validate_name(collection, "collection")

    def lock_path(self, name: str) -> StorePath:
        return self.area("locks") / validate_name(name, "lock")

    def registry_path(self) -> StorePath:
        return self.root / "registry.json"

    def index_names(self) -> list[str]:
        """Indexes with a published version."""
        return sorted(p.parent.name for p in self.area("index").glob("*/CURRENT"))

    def models_dir(self) -> StorePath:
        return self.area("models")

    def model_dir(self, model_id: str) -> StorePath:
        return self.models_dir() / validate_name(model_id, "model")

    def model_alias_path(self, alias: str) -> StorePath:
        """``models/_aliases/<alias>``: names the newest model version saved under that name."""
        return self.models_dir() / "_aliases" / validate_name(alias, "model alias")

    def codes_dir(self, model_id: str, collection: str) -> StorePath:
        return (
            self.area("codes")
            / validate_name(model_id, "model")
            / validate_name(collection, "collection")
        )

    def index_dir(self, name: str) -> StorePath:
        return self.area("index") / validate_name(name, "index")

    def index_version_dir(self, name: str, version: int) -> StorePath:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"index version must be a positive integer, got {version!r}")
        return self.index_dir(name) / f"v{version}"

    def current_pointer(self, name: str) -> StorePath:
        return self.index_dir(name) / "CURRENT"

    def reports_dir(self, run_id: str) -> StorePath:
        return self.area("reports") / validate_name(run_id, "run id")


# ---------------------------------------------------------------- atomic writes (built on hashing/files.py)


def atomic_write_text(path: str | os.PathLike[str] | StorePath, text: str) -> StorePath:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str] | StorePath, obj: Any) -> StorePath:
    """JSON with indent 2 and sorted keys (stable diffs); unknown types via ``str``."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def atomic_write_parquet(path: str | os.PathLike[str] | StorePath, table: pa.Table) -> StorePath:
    with atomic_output_path(path) as temporary:
        pq.write_table(table, temporary)
    return as_path(path)


def create_exclusive_json(path: StorePath, obj: Any) -> bool:
    """Write a JSON commit object only if none exists under that name (see ``create_exclusive``)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    return create_exclusive(path, text.encode("utf-8"))


# ---------------------------------------------------------------- reading


def read_parquet(path: str | os.PathLike[str] | StorePath, columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet file from disk or an object store."""
    path = as_path(path)
    if is_local(path):
        return pq.read_table(path, columns=columns)
    return pq.read_table(path.path, columns=columns, filesystem=path.fs)


def read_parquet_metadata(path: str | os.PathLike[str] | StorePath) -> pq.FileMetaData:
    path = as_path(path)
    if is_local(path):
        return pq.read_metadata(path)
    with path.open("rb") as handle:
        return pq.read_metadata(handle)


def read_json(path: str | os.PathLike[str] | StorePath) -> Any:
    """Parse a JSON file; missing or corrupt files raise errors that name the file."""
    path = as_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"expected a JSON file at {path}, but it does not exist") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"corrupt JSON file {path}: not UTF-8 text ({exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"corrupt JSON file {path}: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "delete or restore it and re-run"
        ) from None
