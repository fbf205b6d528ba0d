"""The store: where everything lives under one root, and how files get there atomically.

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

from hashing.files import TEMP_PREFIX, atomic_output_path, atomic_write_bytes, file_sha256  # noqa: F401  (the store's helpers)

STORE_ENV_VAR = "REELHASH_STORE"
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
    """Paths of the store under ``root``. Pure path arithmetic: nothing is created here."""

    root: Path

    def __post_init__(self) -> None:
        # Always hold an absolute path so paths survive a change of working directory
        # (Ray workers do not share the driver's cwd).
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @classmethod
    def from_option(cls, value: str | os.PathLike[str] | None = None) -> StoreLayout:
        """The store named by ``value``, else ``$REELHASH_STORE``, else ``./reelhash-data``."""
        chosen = value if value not in (None, "") else os.environ.get(STORE_ENV_VAR) or None
        return cls(Path(chosen if chosen is not None else DEFAULT_STORE_ROOT))

    def catalog_dir(self, collection: str) -> Path:
        return self.root / "catalog" / validate_name(collection, "collection")

    def features_dir(self, encoder_id: str, collection: str) -> Path:
        return (
            self.root
            / "features"
            / validate_name(encoder_id, "encoder")
            / validate_name(collection, "collection")
        )

    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, model_id: str) -> Path:
        return self.models_dir() / validate_name(model_id, "model")

    def model_alias_path(self, alias: str) -> Path:
        """``models/_aliases/<alias>``: names the newest model version saved under that name."""
        return self.models_dir() / "_aliases" / validate_name(alias, "model alias")

    def codes_dir(self, model_id: str, collection: str) -> Path:
        return (
            self.root
            / "codes"
            / validate_name(model_id, "model")
            / validate_name(collection, "collection")
        )

    def index_dir(self, name: str) -> Path:
        return self.root / "index" / validate_name(name, "index")

    def index_version_dir(self, name: str, version: int) -> Path:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"index version must be a positive integer, got {version!r}")
        return self.index_dir(name) / f"v{version}"

    def current_pointer(self, name: str) -> Path:
        return self.index_dir(name) / "CURRENT"

    def reports_dir(self, run_id: str) -> Path:
        return self.root / "reports" / validate_name(run_id, "run id")


# ---------------------------------------------------------------- atomic writes (built on hashing/files.py)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """JSON with indent 2 and sorted keys (stable diffs); unknown types via ``str``."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def atomic_write_parquet(path: str | os.PathLike[str], table: pa.Table) -> Path:
    with atomic_output_path(path) as temporary:
        pq.write_table(table, temporary)
    return Path(path)


# ---------------------------------------------------------------- reading


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; missing or corrupt files raise errors that name the file."""
    path = Path(path)
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
