"""Tests for pipeline/store.py: layout paths, name validation, atomic writes, JSON reading."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.store import (
    STORE_ENV_VAR,
    StoreLayout,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    file_sha256,
    read_json,
    validate_name,
)


def _temp_leftovers(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.startswith(".tmp-")]


# ---------------------------------------------------------------- StoreLayout


def test_from_option_prefers_explicit_value(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV_VAR, str(tmp_path / "from-env"))
    layout = StoreLayout.from_option(str(tmp_path / "explicit"))
    assert layout.root == tmp_path / "explicit"


def test_from_option_uses_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV_VAR, str(tmp_path / "from-env"))
    assert StoreLayout.from_option(None).root == tmp_path / "from-env"

    monkeypatch.delenv(STORE_ENV_VAR)
    monkeypatch.chdir(tmp_path)
    layout = StoreLayout.from_option(None)
    assert layout.root == (tmp_path / "reelhash-data").resolve()
    assert layout.root.is_absolute()


def test_from_option_expands_home_and_resolves_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert StoreLayout.from_option("~/store").root == (tmp_path / "store").resolve()

    monkeypatch.chdir(tmp_path)
    assert StoreLayout.from_option("rel/../store2").root == (tmp_path / "store2").resolve()


def test_layout_paths_match_design(tmp_path):
    layout = StoreLayout(tmp_path)
    assert layout.catalog_dir("news") == tmp_path / "catalog" / "news"
    assert layout.features_dir("clip-b32", "news") == tmp_path / "features" / "clip-b32" / "news"
    assert layout.model_dir("itq-64") == tmp_path / "models" / "itq-64"
    assert layout.codes_dir("itq-64", "news") == tmp_path / "codes" / "itq-64" / "news"
    assert layout.index_dir("main") == tmp_path / "index" / "main"
    assert layout.index_version_dir("main", 3) == tmp_path / "index" / "main" / "v3"
    assert layout.current_pointer("main") == tmp_path / "index" / "main" / "CURRENT"
    assert layout.reports_dir("run-1") == tmp_path / "reports" / "run-1"
    assert not (tmp_path / "catalog").exists()  # path arithmetic only


@pytest.mark.parametrize("name", ["a", "News_2024", "clip.v1-final", "9" * 128])
def test_valid_names_accepted(name):
    assert validate_name(name, "collection") == name


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "-x", "with space", "ü", "9" * 129])
def test_invalid_names_rejected_with_rule(tmp_path, name):
    layout = StoreLayout(tmp_path)
    with pytest.raises(ValueError, match="letters, digits"):
        layout.catalog_dir(name)
    with pytest.raises(ValueError, match="invalid index name"):
        layout.index_dir(name)
    with pytest.raises(ValueError, match="invalid model name"):
        layout.model_dir(name)


@pytest.mark.parametrize("version", [0, -1, True, "1"])
def test_index_version_must_be_positive_int(tmp_path, version):
    with pytest.raises(ValueError, match="positive integer"):
        StoreLayout(tmp_path).index_version_dir("main", version)


def test_layout_is_frozen(tmp_path):
    layout = StoreLayout(tmp_path)
    with pytest.raises(AttributeError):
        layout.root = tmp_path / "other"  # type: ignore[misc]


# ---------------------------------------------------------------- atomic writes


def test_atomic_writes_create_parents_and_leave_no_temp_files(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b" / "blob.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "a" / "note.txt", "héllo")
    atomic_write_json(tmp_path / "a" / "c" / "obj.json", {"b": 1, "a": Path("/x")})
    table = pa.table({"x": [1, 2, 3]})
    atomic_write_parquet(tmp_path / "p" / "t.parquet", table)

    assert (tmp_path / "a" / "b" / "blob.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a" / "note.txt").read_text(encoding="utf-8") == "héllo"
    text = (tmp_path / "a" / "c" / "obj.json").read_text()
    assert text == '{\n  "a": "/x",\n  "b": 1\n}\n'  # indent 2, sorted keys, default=str
    assert pq.read_table(tmp_path / "p" / "t.parquet").equals(table)
    assert _temp_leftovers(tmp_path) == []


def test_atomic_write_replaces_existing_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": 1})
    atomic_write_json(target, {"v": 2})
    assert read_json(target) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_failed_write_removes_temp_and_keeps_old_file(tmp_path):
    target = tmp_path / "blob.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert _temp_leftovers(tmp_path) == []


def test_failed_parquet_write_removes_temp(tmp_path):
    with pytest.raises(Exception):
        atomic_write_parquet(tmp_path / "t.parquet", "not a table")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- reading


def test_read_json_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_json(tmp_path / "nope.json")


def test_read_json_corrupt_file_is_clear(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(ValueError, match=r"corrupt JSON file .*bad\.json"):
        read_json(bad)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="corrupt JSON file"):
        read_json(binary)


def test_read_json_round_trip(tmp_path):
    obj = {"list": [1, 2], "nested": {"k": "ü"}}
    atomic_write_json(tmp_path / "o.json", obj)
    assert read_json(tmp_path / "o.json") == obj
    assert json.loads((tmp_path / "o.json").read_text(encoding="utf-8")) == obj


def test_file_sha256_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000  # spans several read chunks
    path = tmp_path / "d.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk_size=7) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_of_a_publish_and_a_model_follows_the_umask(tmp_path, umask, mode):
    """Published shards, model config and weights used to be 0600 whatever the umask (mkstemp)."""
    import numpy as np

    from hashing.bits import codes_to_arrow
    from hashing.encoders import OpenClipEncoderConfig
    from hashing.hashers import make_hasher
    from pipeline.codes import code_schema
    from pipeline.models import save_model
    from pipeline.publish import CollectionCodes, publish_index, with_catalog_columns
    from pipeline.sampling import SamplingConfig

    previous = os.umask(umask)
    try:
        layout = StoreLayout(tmp_path)
        codes = pa.table({"video_id": ["a"], "clip_idx": pa.array([0], pa.int32()), "t_start": [0.0], "t_end": [1.0],
                          "code": codes_to_arrow(np.array([[1, 2]], np.uint8))}, schema=code_schema(16))
        catalog = pa.table({"video_id": ["a"], "uri": ["a.mp4"], "caption": ["x"],
                            "labels": pa.array([None], pa.list_(pa.string()))})
        publish_index(layout, "main", model_id="m", code_bits=16, metrics={}, model_info={},
                      collections=[CollectionCodes("c", "run", with_catalog_columns(codes, catalog))])
        hasher = make_hasher("lsh", 16, seed=0).fit(np.random.default_rng(0).standard_normal((20, 8)))
        save_model(layout, "m", hasher=hasher, encoder_config=OpenClipEncoderConfig(allow_random_weights=True),
                   encoder_info={"encoder_id": "e"}, sampling=SamplingConfig(), training={})
    finally:
        os.umask(previous)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert any(p.suffix == ".faissbin" for p in files) and any(p.name == "weights.safetensors" for p in files)
    assert {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files} == {
        str(p.relative_to(tmp_path)): oct(mode) for p in files}
