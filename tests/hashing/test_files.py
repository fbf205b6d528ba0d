"""Tests for hashing/files.py on local disk (the object-store side runs against a real S3 server in
tests/pipeline/test_store_s3.py and test_catalog_s3.py)."""

from __future__ import annotations

import errno
import multiprocessing
from pathlib import Path

import pytest
from upath import UPath

from hashing.files import (
    as_path,
    create_exclusive,
    holds_files,
    is_local,
    is_uri,
    local_file,
    remove_tree,
    upload_directory,
    walk,
)


def test_as_path_keeps_local_paths_local_and_makes_uris_object_paths():
    assert as_path("/data/store") == Path("/data/store") and is_local(as_path("relative/dir"))
    assert as_path("file:///data/x") == Path("/data/x")
    remote = as_path("s3://bucket/prefix/")
    assert isinstance(remote, UPath) and not is_local(remote) and str(remote) == "s3://bucket/prefix"
    assert str(remote / "index" / "CURRENT") == "s3://bucket/prefix/index/CURRENT"
    assert is_uri("s3://b/k") and not is_uri("/tmp/x") and not is_uri("file:///tmp/x")


def test_an_unknown_scheme_is_one_clear_error():
    with pytest.raises(ValueError, match="unsupported storage location 'nosuch://b/k'"):
        as_path("nosuch://b/k")


def test_create_exclusive_writes_once_and_never_replaces(tmp_path):
    target = tmp_path / "run" / "_MANIFEST.json"
    assert create_exclusive(target, b"first") is True
    assert create_exclusive(target, b"second") is False
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["_MANIFEST.json"]  # no temporary file left


class _ClientError(Exception):
    """Shaped like botocore's ClientError: what s3fs wraps into a plain OSError."""

    def __init__(self, code: str):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


def test_a_412_from_an_object_store_means_the_name_was_taken_even_when_it_is_gone_again(monkeypatch):
    target = as_path("memory://files-test/locks/index.lock")

    def refuse(code: str):
        def pipe_file(*args, **kwargs):
            raise OSError(errno.EINVAL, "refused") from _ClientError(code)
        return pipe_file

    monkeypatch.setattr(type(target.fs), "pipe_file", refuse("PreconditionFailed"))
    assert create_exclusive(target, b"x") is False and not target.exists()
    monkeypatch.setattr(type(target.fs), "pipe_file", refuse("AccessDenied"))
    with pytest.raises(OSError, match="refused"):
        create_exclusive(target, b"x")


def _race(path: str, value: bytes, start, results) -> None:
    start.wait(30)
    results.put((value, create_exclusive(Path(path), value)))


def test_of_two_processes_creating_one_name_exactly_one_wins(tmp_path):
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path / "commit"), bytes([n]) * 1000, start, results))
               for n in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    [winner] = [value for value, won in outcomes if won]
    assert (tmp_path / "commit").read_bytes() == winner


def test_local_file_of_a_local_path_is_the_file_itself(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    with local_file(path) as local:
        assert local == path


def test_walk_prunes_and_holds_files_and_remove_tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"1")
    (tmp_path / "skip" / "g").parent.mkdir()
    (tmp_path / "skip" / "g").write_bytes(b"2")
    (tmp_path / "empty").mkdir()
    seen = []
    for directory, dirnames, filenames in walk(tmp_path):
        dirnames[:] = [name for name in sorted(dirnames) if name != "skip"]
        seen += [str((directory / name).relative_to(tmp_path)) for name in filenames]
    assert seen == ["a/b/f"]
    assert holds_files(tmp_path / "a") and not holds_files(tmp_path / "empty")
    remove_tree(tmp_path / "a")
    remove_tree(tmp_path / "missing")  # nothing to remove is fine
    assert not (tmp_path / "a").exists()


def test_upload_directory_writes_the_commit_file_last(tmp_path, monkeypatch):
    source = tmp_path / "model"
    (source / "streams").mkdir(parents=True)
    for name in ("config.json", "weights.safetensors", "streams/dsmhn.json"):
        (source / name).write_text(name)
    order = []
    import hashing.files as files

    original = files.atomic_write_bytes
    monkeypatch.setattr(files, "atomic_write_bytes", lambda path, data: (order.append(path.name), original(path, data)))
    upload_directory(source, tmp_path / "store" / "m-1", last="config.json")
    assert order[-1] == "config.json" and sorted(order) == ["config.json", "dsmhn.json", "weights.safetensors"]
    assert (tmp_path / "store" / "m-1" / "streams" / "dsmhn.json").read_text() == "streams/dsmhn.json"
