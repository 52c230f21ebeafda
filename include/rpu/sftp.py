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
class RemoteFile:
    path: str
    name: str
    size: int
    mtime: int


class Remote:
    """The few operations the concentrator needs, on a paramiko SFTPClient."""

    def __init__(self, client):
        self.client = client

    def list_files(self, directory: str) -> list[RemoteFile]:
        try:
            entries = self.client.listdir_attr(directory)
        except FileNotFoundError:
            return []
        return sorted(
            (RemoteFile(posixpath.join(directory, e.filename), e.filename, e.st_size or 0, int(e.st_mtime or 0))
             for e in entries if e.st_mode is not None and stat.S_ISREG(e.st_mode)),
            key=lambda f: (f.mtime, f.name))

    def exists(self, path: str) -> bool:
        try:
            self.client.stat(path)
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, directory: str) -> None:
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

    def download(self, path: str, local_path) -> None:
        self.client.get(path, str(local_path))

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

    def move_into(self, path: str, directory: str) -> str:
        """Move a file into a directory, never overwriting: a name already there gets a time suffix."""
        self.makedirs(directory)
        name = posixpath.basename(path)
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
