"""The project's one file layer: where a location lives (local disk or an object store), how a file is written
atomically, created exclusively, checksummed, copied to local disk and removed. Every layer above uses these.

A location is a ``pathlib.Path`` for local disk, or a ``upath.UPath`` (fsspec) for an object-store URI such as
``s3://bucket/prefix`` (``gs://`` and ``az://`` work the same way once ``gcsfs`` / ``adlfs`` are installed). Both
have the pathlib API (``/``, ``name``, ``exists``, ``read_bytes``, ``glob``…), so callers need no branches; the
differences that matter for correctness live here (docs/architecture.md, "Object stores"):

- *Atomic write*: on disk a temporary file beside the target (mode 0666 minus the umask), fsynced and renamed over
  it; in an object store one PUT, which is atomic per object (readers see the old object or the whole new one).
- *Exclusive create* (the commit of a manifest that must be written once): on disk a hard link of a complete
  temporary file (fails if the name exists); in an object store a conditional PUT (``If-None-Match: *``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from upath import UPath

TEMP_PREFIX = ".tmp-"
# Listing caches would hide other writers' objects (another process, another machine); object stores are read
# fresh. Checksums only when the server requires them: servers that do not understand the chunked upload with a
# checksum trailer (SeaweedFS for anonymous requests) would otherwise store the trailer as data.
OBJECT_STORE_OPTIONS: dict[str, dict] = {
    "s3": {
        "use_listings_cache": False,
        "config_kwargs": {"request_checksum_calculation": "when_required",
                          "response_checksum_validation": "when_required"},
    },
}
DEFAULT_OBJECT_STORE_OPTIONS = {"use_listings_cache": False}

StorePath = Union[Path, UPath]


def is_uri(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names an object (``scheme://…``) rather than a local path (``file://`` is local)."""
    text = os.fspath(location) if not isinstance(location, UPath) else str(location)
    return "://" in text and not text.startswith("file://")


def as_path(location: str | os.PathLike[str] | UPath) -> StorePath:
    """A ``Path`` for a local location, a ``UPath`` with the project's options for an object-store URI."""
    if isinstance(location, Path):
        return location
    if isinstance(location, UPath):
        return location if not is_local(location) else Path(location.path)
    text = os.fspath(location)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if is_uri(text):
        protocol = text.split("://", 1)[0]
        options = OBJECT_STORE_OPTIONS.get(protocol, DEFAULT_OBJECT_STORE_OPTIONS)
        try:
            return UPath(text.rstrip("/"), **options)
        except (ValueError, ImportError) as error:
            raise ValueError(f"unsupported storage location {text!r} ({error}); use a local path or s3://bucket/"
                             "prefix (gs:// and az:// need gcsfs / adlfs installed)") from None
    return Path(text)


def is_local(path: StorePath) -> bool:
    return isinstance(path, Path)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; not supported on every platform/filesystem."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _local_temporary_beside(path: Path) -> Iterator[Path]:
    """An empty hidden temporary file beside ``path`` (same filesystem, so it can be renamed or linked there).

    The name keeps the suffix of ``path`` (writers such as matplotlib infer the format from it), is hidden
    (``.tmp-``: listings and readers skip it, ``reelhash gc`` removes it if the writer dies) and unique per writer.
    It is removed on exit unless it was renamed away.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex}{path.suffix}")
    os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies, as for open()
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike[str] | UPath) -> Iterator[Path]:
    """Yield a local temporary file to write; on success it replaces ``path`` atomically (rename or one PUT)."""
    path = as_path(path)
    if not is_local(path):
        with tempfile.TemporaryDirectory(prefix="reelhash-upload-") as directory:
            temporary = Path(directory) / f"upload{path.suffix}"
            temporary.touch()
            yield temporary
            path.fs.put_file(str(temporary), path.path)
        return
    with _local_temporary_beside(path) as temporary:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str] | UPath, data: bytes) -> StorePath:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path = as_path(path)
    if not is_local(path):
        path.fs.pipe_file(path.path, data)
        return path
    with atomic_output_path(path) as temporary:
        temporary.write_bytes(data)
    return path


def is_precondition_failed(error: BaseException) -> bool:
    """An object store's HTTP 412 (a conditional write whose condition did not hold), however the filesystem
    library wrapped it: botocore's ``PreconditionFailed`` code in the cause chain, or its message."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == "PreconditionFailed":
            return True
        if "pre-conditions you specified did not hold" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def create_exclusive(path: str | os.PathLike[str] | UPath, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if nothing exists under that name; False when it already existed.

    Readers never see a partial file. Object stores need conditional writes (``If-None-Match: *``; AWS S3,
    SeaweedFS, MinIO, GCS and Azure honour them); see docs/architecture.md for stores that do not.
    """
    path = as_path(path)
    if not is_local(path):
        try:
            path.fs.pipe_file(path.path, data, mode="create")
        except OSError as error:
            # The object existed when the write arrived: FileExistsError, or 412 Precondition Failed, which s3fs
            # raises as a plain OSError. It may be gone again by now (a lock released between the two), so the
            # 412 itself is the answer, not a look at the store afterwards.
            if isinstance(error, FileExistsError) or is_precondition_failed(error):
                return False
            path.fs.invalidate_cache(path.path)
            if path.exists():
                return False
            raise
        return True
    with _local_temporary_beside(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        fsync_directory(path.parent)
        return True


def file_sha256(path: str | os.PathLike[str] | UPath, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of the whole file, read in chunks."""
    digest = hashlib.sha256()
    with as_path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_range(path: str | os.PathLike[str] | UPath, offset: int, length: int) -> bytes:
    """``length`` bytes of a file from ``offset`` (one ranged GET on an object store)."""
    path = as_path(path)
    if not is_local(path):
        return path.fs.cat_file(path.path, start=offset, end=offset + length)
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def remove_tree(path: str | os.PathLike[str] | UPath) -> None:
    """Remove a file or a directory tree (an object prefix); missing is fine."""
    path = as_path(path)
    if not is_local(path):
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path, recursive=True)
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def local_file(path: str | os.PathLike[str] | UPath) -> Iterator[Path]:
    """A local file with the content of ``path``: the file itself on disk, else a temporary download."""
    path = as_path(path)
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="reelhash-download-") as directory:
        local = Path(directory) / (path.name or "object")
        path.fs.get_file(path.path, str(local))
        yield local


def upload_directory(local_directory: Path, target: StorePath, *, last: str) -> None:
    """Copy every file of ``local_directory`` under ``target``, the file named ``last`` after all others.

    For object stores, where a directory cannot be renamed into place: readers treat ``target`` as present only
    once ``last`` exists, so they never see a partial directory.
    """
    files = sorted(p for p in local_directory.rglob("*") if p.is_file())
    for file in sorted(files, key=lambda p: p.relative_to(local_directory).as_posix() == last):
        atomic_write_bytes(target / file.relative_to(local_directory).as_posix(), file.read_bytes())


def make_directory(path: StorePath) -> None:
    """Create a local directory (and parents); object stores have no directories, so nothing to do there."""
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)


def object_etag(path: UPath) -> str | None:
    """The entity tag of an object (what a conditional replace must match); None when it does not exist."""
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return None
    return info.get("ETag") or info.get("etag")


def replace_if_unchanged(path: UPath, data: bytes, etag: str) -> bool:
    """Replace an object only if it still has ``etag`` (``If-Match``); False when someone changed it first."""
    try:
        path.fs.pipe_file(path.path, data, IfMatch=etag)
    except FileNotFoundError:
        return False
    except OSError as error:
        if "condition" in str(error).lower():  # 412 Precondition Failed
            return False
        raise
    return True


def walk(root: StorePath) -> Iterator[tuple[StorePath, list[str], list[str]]]:
    """``os.walk`` for a local directory or an object prefix, top-down: removing a name from the yielded
    directory list skips that subtree."""
    if is_local(root):
        for directory, dirnames, filenames in os.walk(root):
            yield Path(directory), dirnames, filenames
        return
    for directory, dirnames, filenames in root.fs.walk(root.path, topdown=True):
        relative = directory[len(root.path):].strip("/")
        yield (root / relative if relative else root), dirnames, filenames


def _object_infos(path: UPath) -> list[dict]:
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return []
    if info.get("type") != "directory":
        return [info]
    return list(path.fs.find(path.path, detail=True).values())


def tree_size(path: StorePath) -> int:
    """Bytes of a file, or of every file under a directory (prefix)."""
    if is_local(path):
        if path.is_file() or path.is_symlink():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    return sum(int(info.get("size") or 0) for info in _object_infos(path))


def tree_mtime(path: StorePath) -> float:
    """When a file, or the newest file under a directory (prefix), was last written (seconds since the epoch)."""
    if is_local(path):
        return path.lstat().st_mtime
    times = [info["LastModified"].timestamp() for info in _object_infos(path) if info.get("LastModified")]
    return max(times, default=0.0)


def holds_files(path: StorePath) -> bool:
    """Whether a directory (prefix) has any file under it. Some object stores keep an empty "directory" entry
    after its objects are deleted (SeaweedFS does), so existence alone says nothing there."""
    if is_local(path):
        return path.is_dir() and any(p.is_file() for p in path.rglob("*"))
    return any(info.get("type") == "file" and info["name"].rstrip("/") != path.path.rstrip("/")
               for info in _object_infos(path))
