from __future__ import annotations

import pytest

from pipeline.registry import (
    RegistryError,
    add_collection,
    attach_collection,
    collection_source,
    index_collections,
    read_registry,
    remove_collection,
)
from pipeline.store import StoreLayout


def test_add_list_attach_and_remove(tmp_path):
    layout = StoreLayout(tmp_path / "store")
    media = tmp_path / "media"
    media.mkdir()
    manifest = media / "m.csv"
    manifest.write_text("uri\na.mp4\n")
    add_collection(layout, "alpha", str(media), index="main")
    add_collection(layout, "beta", str(media), manifest=str(manifest))
    attach_collection(layout, "main", "beta")
    assert list(index_collections(layout, "main")) == ["alpha", "beta"]
    assert collection_source(read_registry(layout)["collections"]["beta"]) == str(manifest.resolve())
    assert collection_source(read_registry(layout)["collections"]["alpha"]) == str(media.resolve())
    remove_collection(layout, "alpha")
    assert list(index_collections(layout, "main")) == ["beta"]


def test_errors_say_what_to_do(tmp_path):
    layout = StoreLayout(tmp_path)
    with pytest.raises(RegistryError, match="does not exist"):
        add_collection(layout, "x", str(tmp_path / "missing"))
    add_collection(layout, "x", str(tmp_path))
    with pytest.raises(RegistryError, match="already registered"):
        add_collection(layout, "x", str(tmp_path))
    with pytest.raises(RegistryError, match="unknown collection 'y'"):
        remove_collection(layout, "y")
    with pytest.raises(RegistryError, match="reelhash collection add"):
        index_collections(layout, "nothing")
    with pytest.raises(ValueError, match="letters, digits"):
        add_collection(layout, "bad name", str(tmp_path))
