"""The Airflow connections of a region: printed as `airflow connections add` commands, or created."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
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

    def command(self) -> str:
        return f"airflow connections add {self.conn_id} --conn-uri {shlex.quote(self.uri)}"


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
                      note="" if password else "password of the role: unchanged (--rotate-password sets a new one)")]
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


def _airflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def create_connections(specs: list[ConnSpec], secret: str | None) -> tuple[list[str], list[ConnSpec]]:
    """`airflow connections add` for each complete connection not there yet (AIRFLOW_CONN_* variables count); a
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
    lines, todo = [], []
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
        if s.conn_id in existing:
            deleted = _airflow("connections", "delete", s.conn_id)
            if deleted.returncode != 0:
                raise ServiceError(f"airflow connections delete {s.conn_id} failed: "
                                   f"{masked(deleted.stderr.strip()[-1500:])}")
        added = _airflow("connections", "add", s.conn_id, "--conn-uri", s.uri)
        if added.returncode != 0:
            raise ServiceError(f"airflow connections add {s.conn_id} failed: "
                               f"{masked((added.stderr or added.stdout).strip()[-1500:])}")
        lines.append(f"{s.conn_id}: {'replaced (new password)' if s.conn_id in existing else 'created'}")
    return lines, todo


