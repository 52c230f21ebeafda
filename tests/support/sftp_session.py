"""An rpu.sftp.Remote on a paramiko session of the suite's SFTP server (host key pinned), for the tests of the
domain modules that upload or read without going through Airflow's SFTP hook."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import paramiko

from rpu.sftp import Remote


class Account:
    """A fresh account of the SFTP server, confined to `root` (a local directory the test can look into)."""

    def __init__(self, server, root: Path):
        self.server = server
        self.user, self.password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        self.root = server.add_user(self.user, self.password, root)
        self.known_hosts = root.parent / f"{self.user}_known_hosts"
        self.known_hosts.write_text(server.known_hosts_line() + "\n")

    @contextmanager
    def open(self, password: str | None = None) -> Iterator[Remote]:
        """A session as rpu.sftp.open_remote gives one (an SFTP server that does not answer raises; so does a
        wrong `password`)."""
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        ssh.load_host_keys(str(self.known_hosts))
        ssh.connect(self.server.host, self.server.port, username=self.user, password=password or self.password,
                    look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        try:
            client = ssh.open_sftp()
            try:
                yield Remote(client)
            finally:
                client.close()
        finally:
            ssh.close()

    def remove(self) -> None:
        self.server.remove_user(self.user)
