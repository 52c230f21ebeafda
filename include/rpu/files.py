"""Local files that hold patient data (archive, outbox, work): private to the concentrator's account, and tidied.

Every such file is created 0600 in directories created 0700, whatever the process umask (Airflow workers run
with the default 022). Downloads go to a work area per ingest task, locked with flock(2) for the life of its
process: the kernel drops the lock when the process dies, even by SIGKILL, so `clean_work` removes exactly the
leftovers of killed tasks and never a live task's file. The archive is kept forever unless the region sets
`archive_retention_days` (docs/intake.md).
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
LOCK_NAME = ".lock"
NEW_DIR_GRACE_S = 60          # a work area younger than this may not hold its lock yet
STRAY_FILE_AGE_S = 24 * 3600  # plain files in work/ (left by versions before work areas): removed after a day


def private_dir(path: Path) -> Path:
    """`mkdir -p` whose created levels are 0700; the leaf is set to 0700 even if it existed."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(d, DIR_MODE)   # mkdir's mode passes through the umask
    if path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, mode: str = "wb"):
    """Open a file for writing, created (or truncated) 0600; a symlink in its place is refused (O_NOFOLLOW)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    with open_private(path) as fh:
        fh.write(data)


def copy_private(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open_private(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


class WorkArea:
    """A private directory for one ingest task's downloads, `work/<region>/<pid>-<random>/`, removed at exit
    and locked (flock) meanwhile; the forked parser inherits the lock, so it is held until both are gone."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> "WorkArea":
        private_dir(self.root)
        self.path = self.root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir(mode=DIR_MODE)
        os.chmod(self.path, DIR_MODE)
        self._fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def file(self, name: str) -> Path:
        assert self.path is not None
        return self.path / f"{uuid.uuid4().hex[:8]}_{name}"

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)


def clean_work(root: Path) -> int:
    """Remove the work areas no live process holds (leftovers of killed tasks); returns how many."""
    root = Path(root)
    if not root.is_dir():
        return 0
    removed = 0
    now = time.time()
    for entry in root.iterdir():
        try:
            if entry.is_symlink() or not entry.is_dir():
                if now - entry.lstat().st_mtime > STRAY_FILE_AGE_S:
                    entry.unlink()
                    removed += 1
                continue
            try:
                fd = os.open(entry / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                if now - entry.stat().st_mtime > NEW_DIR_GRACE_S:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue   # its task is alive
            else:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            finally:
                os.close(fd)
        except FileNotFoundError:
            continue      # removed meanwhile by its own task
    if removed:
        log.info("work area %s: %s leftover(s) of killed tasks removed", root, removed)
    return removed


def retention_cutoff(days: int, today: date | None = None) -> float:
    """The modification time (epoch seconds) before which a file is past a retention of `days`."""
    return time.mktime(((today or date.today()) - timedelta(days=days)).timetuple())


def apply_retention(archive_dir: Path, days: int | None, today: date | None = None) -> int:
    """Delete archived raw files older than `days` (by modification time); None keeps everything. Empty
    month and year directories go too. Returns the number of files deleted."""
    if not days:
        return 0
    archive_dir = Path(archive_dir)
    if not archive_dir.is_dir():
        return 0
    cutoff = retention_cutoff(days, today)
    removed = 0
    touched: set[str] = set()   # directories this pass emptied something from
    for dirpath, dirnames, filenames in os.walk(archive_dir, topdown=False):
        for name in filenames:
            p = Path(dirpath) / name
            try:
                if p.lstat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
                    touched.add(dirpath)
            except FileNotFoundError:
                pass
        if Path(dirpath) != archive_dir:
            try:
                # only when empty, and not a directory an ingest has just created for its copy
                if dirpath in touched or os.stat(dirpath).st_mtime < cutoff:
                    os.rmdir(dirpath)
                    touched.add(os.path.dirname(dirpath))
            except OSError:
                pass
    if removed:
        log.info("archive %s: %s raw file(s) older than %s days deleted (archive_retention_days)",
                 archive_dir, removed, days)
    return removed
