"""Shared storage: where what must outlive a task try, or be seen by another task, is kept (the archive of raw
files, the outbox of built send files and their manifests). Everything else a task needs from an earlier try
is in PostgreSQL; a task's scratch (a download before its checks, a file being built) stays on the worker's
local disk and no later try relies on it.

A *location* is either a local path (`pathlib.Path`: one machine, or a shared mount) or a URL
(`s3://bucket/prefix`, `file:///…`): a URL goes through Airflow's ObjectStoragePath with the connection
`rpu_storage` (credentials, endpoint of an S3/MinIO-compatible store). The root is `RPU_STORAGE_URL`, by
default the local data directory (`RPU_DATA_DIR`), so nothing changes on one machine (rpu.config).

Local files keep the rules of rpu.files (0600 in 0700 directories, written aside then renamed in). An object
is written whole, so a reader never sees half of it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from rpu import config, files

log = logging.getLogger(__name__)

CONN_ID = "rpu_storage"


def is_url(location) -> bool:
    return config.is_url(location)


def _object(location):
    # Airflow's ObjectStoragePath, imported here only: the local case (the default) never loads it, and DAG
    # files importing the domain stay light to parse
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(str(location), conn_id=CONN_ID)


def _open_write(location):
    obj = _object(location)
    obj.parent.mkdir(parents=True, exist_ok=True)   # a file system needs it; an object store has no folders
    return obj.open("wb")


join = config.join_location          # the location `parts` under a location (Path stays Path, URL stays URL)
location = config.as_location        # a location from its recorded text


def exists(location) -> bool:
    return _object(location).exists() if is_url(location) else Path(location).exists()


def size(location) -> int:
    return _object(location).stat().st_size if is_url(location) else Path(location).stat().st_size


@contextmanager
def open_read(location) -> Iterator:
    with (_object(location).open("rb") if is_url(location) else open(location, "rb")) as fh:
        yield fh


def sha256(location) -> str:
    h = hashlib.sha256()
    with open_read(location) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def put_file(local: Path, location) -> None:
    """Store a local file at `location`, whole: a local copy is written aside (0600) then renamed in."""
    if is_url(location):
        with open(local, "rb") as fin, _open_write(location) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        return
    target = Path(location)
    files.private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        files.copy_private(local, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(location, data: bytes) -> None:
    if is_url(location):
        with _open_write(location) as fh:
            fh.write(data)
        return
    target = Path(location)
    files.private_dir(target.parent)
    files.write_private(target, data)


def scratch_root() -> Path:
    """This worker's local scratch (under `RPU_DATA_DIR`): files of one task try only."""
    return config.data_dir() / "scratch"


@contextmanager
def scratch_file(name: str) -> Iterator[Path]:
    """A private local file for the time of one block, in a directory of its own under the scratch root."""
    root = files.private_dir(scratch_root())
    directory = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
    try:
        yield directory / name
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def staged(location) -> Iterator[Path]:
    """A local file to write what goes to `location`; stored there when the block ends without error. A local
    location is built beside its place (`<name>.building`, renamed in); a URL is built in the scratch."""
    if is_url(location):
        with scratch_file(str(location).rsplit("/", 1)[-1]) as tmp:
            files.write_private(tmp, b"")
            yield tmp
            put_file(tmp, location)
        return
    target = Path(location)
    files.private_dir(target.parent)   # patient data: 0600 files in 0700 directories
    tmp = target.with_name(target.name + ".building")
    files.write_private(tmp, b"")     # the writer truncates it and keeps its mode
    yield tmp
    tmp.replace(target)


@contextmanager
def local_copy(location, expected_sha256: str | None = None) -> Iterator[Path]:
    """A local file holding the bytes at `location`: the file itself when local, else a scratch copy. With
    `expected_sha256`, bytes that differ raise ValueError (never sent as if they were the recorded ones)."""
    if not is_url(location):
        if expected_sha256 and sha256(location) != expected_sha256:
            raise ValueError(f"{location}: stored file differs from its recorded sha256")
        yield Path(location)
        return
    with scratch_file(str(location).rsplit("/", 1)[-1]) as tmp:
        h = hashlib.sha256()
        with open_read(location) as fin, files.open_private(tmp) as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
        if expected_sha256 and h.hexdigest() != expected_sha256:
            raise ValueError(f"{location}: stored file differs from its recorded sha256")
        yield tmp


def apply_retention(location, days: int | None, today: date | None = None) -> int:
    """Delete stored files older than `days` under `location` (rpu.files.apply_retention for a local one)."""
    if not is_url(location):
        return files.apply_retention(Path(location), days, today)
    if not days:
        return 0
    root = _object(location)
    if not root.exists():
        return 0
    cutoff = files.retention_cutoff(days, today)
    removed = 0
    for p in list(root.rglob("*")):
        if p.is_file() and p.stat().st_mtime < cutoff:
            p.unlink()
            removed += 1
    if removed:
        log.info("archive %s: %s raw file(s) older than %s days deleted (archive_retention_days)",
                 location, removed, days)
    return removed
