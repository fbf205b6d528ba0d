"""The collections registry: which collections exist, where their media are, and which indexes cover them.

Stored as ``<root>/registry.json`` and rewritten atomically under a file lock, so concurrent
``reelhash collection`` commands never lose each other's changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from pipeline.catalog import absolute_source, media_location, source_exists
from pipeline.locks import exclusive_lock
from pipeline.store import StoreLayout, StorePath, atomic_write_json, read_json, validate_name



class RegistryError(ValueError):
    """A registry operation that cannot be done as asked (unknown name, duplicate, …)."""


def _path(layout: StoreLayout) -> StorePath:
    return layout.registry_path()


def read_registry(layout: StoreLayout) -> dict:
    path = _path(layout)
    registry = read_json(path) if path.exists() else {}
    registry.setdefault("collections", {})
    registry.setdefault("indexes", {})
    return registry


@contextlib.contextmanager
def _editing(layout: StoreLayout) -> Iterator[dict]:
    with exclusive_lock(layout.lock_path("registry.lock"), what="the registry", wait_seconds=None):
        registry = read_registry(layout)
        yield registry
        atomic_write_json(_path(layout), registry)


def collection_source(entry: dict) -> str:
    """What the catalog step discovers: the manifest when one was given, else the source."""
    return entry.get("manifest") or entry["source"]


def add_collection(layout: StoreLayout, name: str, source: str, *, manifest: str | None = None,
                   index: str | None = None) -> dict:
    """Register a collection (absolute paths) and, optionally, add it to an index."""
    validate_name(name, "collection")
    if not source_exists(source):
        raise RegistryError(f"source {source} does not exist; give a directory, a glob or a manifest file")
    if manifest is not None and not media_location(manifest).is_file():
        raise RegistryError(f"manifest {manifest} is not a file")
    with _editing(layout) as registry:
        if name in registry["collections"]:
            raise RegistryError(f"collection {name!r} is already registered; remove it first to change its source")
        entry = {
            "source": absolute_source(source),
            "manifest": absolute_source(manifest) if manifest else None,
            "added_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        registry["collections"][name] = entry
        if index is not None:
            _attach(registry, index, name)
    return entry


def _attach(registry: dict, index: str, collection: str) -> None:
    validate_name(index, "index")
    members = registry["indexes"].setdefault(index, {"collections": []})["collections"]
    if collection not in members:
        members.append(collection)


def attach_collection(layout: StoreLayout, index: str, collection: str) -> None:
    with _editing(layout) as registry:
        if collection not in registry["collections"]:
            raise RegistryError(f"unknown collection {collection!r}; add it with 'reelhash collection add'")
        _attach(registry, index, collection)


def remove_collection(layout: StoreLayout, name: str) -> None:
    """Unregister a collection and detach it from every index (its stored data stays until re-published)."""
    with _editing(layout) as registry:
        if name not in registry["collections"]:
            raise RegistryError(f"unknown collection {name!r}; known: {', '.join(sorted(registry['collections'])) or 'none'}")
        del registry["collections"][name]
        for index in registry["indexes"].values():
            if name in index["collections"]:
                index["collections"].remove(name)


def index_collections(layout: StoreLayout, index: str) -> dict[str, dict]:
    """The registered collections of an index, name → entry, in the order they were added."""
    registry = read_registry(layout)
    if index not in registry["indexes"]:
        known = ", ".join(sorted(registry["indexes"])) or "none"
        raise RegistryError(f"index {index!r} has no registered collections (known indexes: {known}); "
                            f"use 'reelhash collection add NAME SOURCE --index {index}'")
    return {name: registry["collections"][name] for name in registry["indexes"][index]["collections"]
            if name in registry["collections"]}


def ensure_registered(layout: StoreLayout, name: str, source: str, index: str) -> None:
    """Register a collection indexed by hand (if new) and attach it to the index, so nightly runs cover it."""
    with _editing(layout) as registry:
        if name not in registry["collections"]:
            path = media_location(source)
            is_manifest = path.suffix.lower() in (".parquet", ".csv") and path.is_file()
            registry["collections"][name] = {
                "source": absolute_source(source),
                "manifest": absolute_source(source) if is_manifest else None,
                "added_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            }
        _attach(registry, index, name)
