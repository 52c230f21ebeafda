"""The Airflow connections of a region: printed as `airflow connections add` commands, or created — imported
from a file only its owner may read (`airflow connections import`), never with a password on a command line."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from rpu.config import Region
from rpu.provision.errors import ServiceError
from rpu.provision.sftptree import SftpSession


# --- Airflow connections ------------------------------------------------------------------------------------

@dataclass
class ConnSpec:
    conn_id: str
    uri: str
    complete: bool          # no placeholder left: may be created as is
    note: str = ""
    replace: bool = False   # exists with an outdated secret (password rotated)
    secret: str | None = None   # the password inside `uri` (as written there): never printed in a command

    def command(self) -> str:
        """The command to create it by hand, the password as `<password>`: a password typed on a command line
        stays in the shell's history and shows in `ps` (`--create-connections` imports it from a 0600 file)."""
        uri = self.uri.replace(self.secret, "<password>") if self.secret else self.uri
        return f"airflow connections add {self.conn_id} --conn-uri {shlex.quote(uri)}"


def _sftp_uri(host: str, port: int | str, host_key: str | None) -> str:
    query = urlencode({"host_key": host_key}, quote_via=quote) if host_key else "host_key=<type>%20<base64>"
    return f"sftp://<login>:<password>@{host}:{port}/?{query}"


def connection_specs(region: Region, *, db_host: str | None, password: str | None,
                     sftp: SftpSession | None, rotated: bool) -> list[ConnSpec]:
    name = f"rpu_{region.code}"
    specs = [ConnSpec(region.db_conn_id,
                      f"postgres://{name}:{quote(password, safe='') if password else '<password>'}@"
                      f"{db_host or '<host>:5432'}/{name}",
                      complete=bool(password and db_host), replace=rotated,
                      note="" if password else "password of the role: unchanged (--rotate-password sets a new one)",
                      secret=quote(password, safe="") if password else None)]
    if sftp:
        specs.append(ConnSpec(region.sftp_intake_conn_id, _sftp_uri(sftp.host, sftp.port, sftp.host_key), False,
                              note="the concentrator's account on the intake server (sees every establishment's tree "
                                   f"at {region.intake.base_dir or 'its login directory'})"))
    else:
        specs.append(ConnSpec(region.sftp_intake_conn_id, _sftp_uri("<host>", 22, None), False,
                              note="the concentrator's account on the intake server"))
    for r in region.sends.recipients.values():
        specs.append(ConnSpec(r.conn_id, _sftp_uri(f"<{r.name}-host>", 22, None), False,
                              note=f"SFTP account at {r.name.upper()}"))
    return specs


ENV_AIRFLOW = "RPU_AIRFLOW_CMD"   # the `airflow` command to run (default: this Python's `python -m airflow`)


def airflow_command() -> list[str]:
    return shlex.split(os.environ[ENV_AIRFLOW]) if os.environ.get(ENV_AIRFLOW) else [sys.executable, "-m", "airflow"]


def _airflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*airflow_command(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=300)


def import_connections(specs: list[ConnSpec]) -> subprocess.CompletedProcess:
    """`airflow connections import --overwrite FILE`: the connections written to a JSON file (conn id → URI) that
    only its owner may read (0600, in a private temporary directory), deleted once imported. The passwords never
    appear in a command line (`ps`, shell history, audit logs of commands)."""
    with tempfile.TemporaryDirectory(prefix="rpu-connections-") as directory:   # 0700
        path = os.path.join(directory, "connections.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({s.conn_id: s.uri for s in specs}, f)
        try:
            return _airflow("connections", "import", "--overwrite", path)
        finally:
            os.unlink(path)


def create_connections(specs: list[ConnSpec], secret: str | None) -> tuple[list[str], list[ConnSpec]]:
    """Import each complete connection not there yet (AIRFLOW_CONN_* variables count) from a 0600 file; a
    connection whose password was just rotated is replaced. Returns (report lines, connections still to create:
    missing and with placeholders)."""
    def masked(text: str) -> str:
        return text.replace(secret, "***") if secret else text

    listed = _airflow("connections", "list", "-o", "json")
    if listed.returncode != 0:
        raise ServiceError("airflow connections list failed: " + masked(listed.stderr.strip()[-1500:]))
    try:
        existing = {c["conn_id"] for c in json.loads(listed.stdout[listed.stdout.find("["):] or "[]")}
    except (ValueError, KeyError, TypeError):
        raise ServiceError("airflow connections list -o json: unexpected output") from None
    lines, todo, ready = [], [], []
    for s in specs:
        env_var = f"AIRFLOW_CONN_{s.conn_id.upper()}"
        if env_var in os.environ:
            lines.append(f"{s.conn_id}: defined by the environment ({env_var}): left alone"
                         + (" — UPDATE IT with the new password" if s.replace else ""))
            continue
        if s.conn_id in existing and not (s.replace and s.complete):
            lines.append(f"{s.conn_id}: exists, left alone")
            continue
        if not s.complete:
            todo.append(s)
            continue
        ready.append(s)
    if ready:
        done = import_connections(ready)
        said = done.stdout + done.stderr
        missing = [s.conn_id for s in ready if f"Imported connection {s.conn_id}" not in said]
        if done.returncode != 0 or missing:
            what = ", ".join(missing) or f"exit {done.returncode}"
            raise ServiceError(f"airflow connections import failed ({what}): {masked(said.strip()[-1500:])}")
        lines += [f"{s.conn_id}: {'replaced (new password)' if s.conn_id in existing else 'created'}" for s in ready]
    return lines, todo


def import_pools(pools: dict[str, tuple[int, str]]) -> None:
    """`airflow pools import FILE`: create or resize the pools (name → (slots, description), rpu.pools)."""
    with tempfile.TemporaryDirectory(prefix="rpu-pools-") as directory:
        path = os.path.join(directory, "pools.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({name: {"slots": slots, "description": description, "include_deferred": False}
                       for name, (slots, description) in pools.items()}, f)
        done = _airflow("pools", "import", path)
    if done.returncode != 0:
        raise ServiceError(f"airflow pools import failed: {(done.stderr or done.stdout).strip()[-1500:]}")
