"""Thin adapter over an SFTP client (paramiko's, as given by the Airflow SFTP provider's hook).

The provider verifies host keys by default (connection extra `host_key`, or known_hosts); nothing here turns
that off. Uploads are atomic: written under a temporary name, then renamed.
"""
from __future__ import annotations

import posixpath
import stat
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class RemoteEntry:
    """One entry of a directory as the server lists it (its lstat: a symlink is a symlink), its name as bytes."""
    directory: str
    raw: bytes
    size: int
    mtime: int
    mode: int | None

    @property
    def path(self) -> bytes:
        return self.directory.encode() + b"/" + self.raw if self.directory else self.raw

    @property
    def kind(self) -> str:
        return kind_of(self.mode)


def kind_of(mode: int | None) -> str:
    """file, link, dir or other (a socket, a fifo…, or no type given by the server)."""
    if mode is None:
        return "other"
    return ("file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode)
            else "dir" if stat.S_ISDIR(mode) else "other")


class EntryRefused(Exception):
    """An inbox entry that is not to be read: `reason` is link, dir, other, swapped or too_large."""

    def __init__(self, reason: str, size: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.size = size


class EntryChanged(Exception):
    """The file changed while it was being opened or read (still being written): left for the next look."""


def _identity(attr) -> tuple:
    return attr.st_size, attr.st_mtime, attr.st_uid, attr.st_gid, attr.st_mode


class Remote:
    """The few operations the concentrator needs, on a paramiko SFTPClient."""

    def __init__(self, client):
        self.client = client
        self._made: set[str] = set()   # directories known to exist in this session (ack/, archive/…)

    def list_entries(self, directory: str) -> list[RemoteEntry]:
        """Every entry of a directory, oldest first, names as bytes. paramiko's listdir_attr decodes names as
        UTF-8 and raises on the first that is not (a Latin-1 client is enough): one odd name would hide every
        file of the region. The same requests are made here with the names kept as bytes (paramiko's request
        layer, pinned in requirements.lock)."""
        from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR
        from paramiko.sftp_attr import SFTPAttributes

        c = self.client
        try:
            t, msg = c._request(CMD_OPENDIR, c._adjust_cwd(directory))
        except FileNotFoundError:
            return []
        if t != CMD_HANDLE:
            raise OSError(f"SFTP server gave no handle for the directory {directory}")
        handle = msg.get_binary()
        entries = []
        try:
            while True:
                try:
                    t, msg = c._request(CMD_READDIR, handle)
                except (EOFError, FileNotFoundError):   # the end; or no such directory (some servers open lazily)
                    break
                if t != CMD_NAME:
                    raise OSError(f"unexpected SFTP answer while listing {directory}")
                for _ in range(msg.get_int()):
                    raw = msg.get_string()
                    msg.get_string()   # the long name (ls -l line): not used
                    attr = SFTPAttributes._from_msg(msg)
                    if raw not in (b".", b".."):
                        entries.append(RemoteEntry(directory, raw, attr.st_size or 0, int(attr.st_mtime or 0),
                                                   attr.st_mode))
        finally:
            c._request(CMD_CLOSE, handle)
        return sorted(entries, key=lambda e: (e.mtime, e.raw))

    def lstat(self, path):
        return self.client.lstat(path)

    def download_checked(self, path, out, *, limit: int) -> int:
        """Copy a regular file into the open local file `out`; returns its size. What is read is what was
        opened, checked on the handle itself (fstat) against the entry before and after opening: an entry
        that is (or became) a symlink, a directory or anything but a regular file is refused (EntryRefused)
        and never read through — SFTP v3 has no O_NOFOLLOW, so a swap is caught by comparing the entry's
        lstat with the opened handle's attributes. More than `limit` bytes stop the copy (too_large); a
        file changing meanwhile raises EntryChanged."""
        before = self.client.lstat(path)
        kind = kind_of(before.st_mode)
        if kind != "file":
            raise EntryRefused(kind)
        if (before.st_size or 0) > limit:
            raise EntryRefused("too_large", before.st_size)
        with self.client.open(path, "rb") as fh:
            opened = fh.stat()
            after = self.client.lstat(path)
            if kind_of(opened.st_mode) != "file" or kind_of(after.st_mode) != "file" \
                    or _identity(after) != _identity(opened):
                raise EntryRefused("swapped")
            if _identity(before) != _identity(opened):
                raise EntryChanged(path)
            size = opened.st_size or 0
            fh.prefetch(size)
            n = 0
            while data := fh.read(1 << 20):
                n += len(data)
                if n > limit:
                    raise EntryRefused("too_large", n)
                out.write(data)
        if n != size:
            raise EntryChanged(path)
        return n

    def exists(self, path: str) -> bool:
        try:
            self.client.stat(path)
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, directory: str) -> None:
        if directory in self._made:
            return
        parts = [p for p in directory.split("/") if p]
        current = "/" if directory.startswith("/") else ""
        for part in parts:
            current = posixpath.join(current, part) if current else part
            if not self.exists(current):
                try:
                    self.client.mkdir(current)
                except OSError:
                    if not self.exists(current):  # created meanwhile by another worker
                        raise
        self._made.add(directory)

    def _atomic(self, path: str, write) -> None:
        """A reader never sees a partial file under the final name: write a temporary name, then rename."""
        directory = posixpath.dirname(path)
        if directory:
            self.makedirs(directory)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        write(tmp)
        self.replace(tmp, path)

    def put_bytes(self, path: str, data: bytes) -> None:
        """Atomic upload of a small content (receipts, manifests)."""
        def write(tmp):
            with self.client.open(tmp, "wb") as fh:
                fh.write(data)
        self._atomic(path, write)

    def put_file(self, local_path, path: str) -> None:
        """Atomic upload of a local file (streamed: files of millions of visits do not go through memory)."""
        self._atomic(path, lambda tmp: self.client.put(str(local_path), tmp, confirm=True))

    def size(self, path: str) -> int | None:
        try:
            return self.client.stat(path).st_size
        except FileNotFoundError:
            return None

    def replace(self, src: str, dst: str) -> None:
        """Rename, replacing dst (posix_rename where the server has it, else remove then rename)."""
        try:
            self.client.posix_rename(src, dst)
        except (OSError, AttributeError):
            if self.exists(dst):
                self.client.remove(dst)
            self.client.rename(src, dst)

    def move_into(self, path: str | bytes, directory: str, name: str | None = None) -> str:
        """Move a file into a directory (as `name`, default its own), never overwriting: a name already there
        gets a time suffix."""
        self.makedirs(directory)
        name = name or posixpath.basename(path)
        target = posixpath.join(directory, name)
        if self.exists(target):
            target = posixpath.join(directory, f"{name}.{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}")
        self.client.rename(path, target)
        return target


@contextmanager
def open_remote(conn_id: str, attempts: int = 3) -> Iterator[Remote]:
    """An SFTP session from an Airflow connection (imported here: the package stays Airflow-free).

    `attempts`: connection attempts within one task try (the hook waits 3–5 s between them); Airflow's task
    retries come on top."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=conn_id, conn_retry_attempts=attempts)
    with hook.get_managed_conn() as client:
        yield Remote(client)
