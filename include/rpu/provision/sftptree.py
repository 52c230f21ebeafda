"""The establishments' directories on the intake SFTP server, created as its administrator (paramiko, host key
verified)."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, urlsplit

from rpu.config import Region
from rpu.provision.errors import ProvisionError, ServiceError, fail
from rpu.sftp import Remote

KINDS = ("inbox", "archive", "rejected", "ack")
ENV_SFTP_ADMIN = "RPU_SFTP_ADMIN"
ENV_SFTP_PASSWORD = "RPU_SFTP_ADMIN_PASSWORD"


# --- SFTP ---------------------------------------------------------------------------------------------------

@dataclass
class SftpAdmin:
    """Where and how to reach the intake SFTP server as its administrator."""
    spec: str
    conn_id: str | None = None
    host: str = ""
    port: int = 22
    user: str | None = None
    password: str | None = None
    key_file: str | None = None
    host_key: str | None = None        # "<type> <base64>" or "SHA256:<fingerprint>"
    known_hosts: str | None = None
    base: str = ""
    pkey: object = None                # a paramiko key given by an Airflow connection's private_key extra

    @property
    def display(self) -> str:
        if self.conn_id:
            return f"connection {self.conn_id}"
        return f"sftp://{self.user + '@' if self.user else ''}{self.host}:{self.port}/{self.base.lstrip('/')}"


def _sftp_admin_arg(value: str | None, problems: list[str]):
    """--sftp-admin parsed, or None; what is wrong with it goes to `problems`."""
    if not value:
        return None
    try:
        return parse_sftp_admin(value)
    except ProvisionError as exc:
        problems += str(exc).split("\n  ")[1:]
        return None


def parse_sftp_admin(spec: str) -> SftpAdmin:
    """An Airflow connection id, or `sftp://user[:password]@host[:port][/base]?host_key=...` (or
    `known_hosts=PATH`; `key_file=PATH` for key authentication). The host key must be pinned: refused otherwise.
    The path is the base directory, absolute (`/srv/rpu`), or relative to the login directory (`/~/rpu`)."""
    if "://" not in spec:
        if not re.fullmatch(r"[\w.\-]+", spec):
            raise ProvisionError(f"refused, nothing was changed:\n  --sftp-admin {spec!r}: neither an Airflow "
                                 "connection id nor an sftp:// URL")
        return admin_from_connection(spec)
    parts = urlsplit(spec)
    problems = []
    if parts.scheme != "sftp":
        problems.append(f"--sftp-admin: scheme {parts.scheme!r}: expected sftp://")
    try:
        port = parts.port or 22
    except ValueError:
        port = 22
        problems.append("--sftp-admin: bad port")
    params: dict[str, str] = {}
    for item in filter(None, parts.query.split("&")):
        k, _, v = item.partition("=")
        params[unquote(k)] = unquote(v)     # not unquote_plus: '+' is a base64 character of host keys
    unknown = set(params) - {"host_key", "known_hosts", "key_file"}
    if unknown:
        problems.append(f"--sftp-admin: unknown parameter(s) {', '.join(sorted(unknown))} "
                        "(known: host_key, known_hosts, key_file)")
    host_key = params.get("host_key")
    if host_key and " " not in host_key:
        m = re.match(r"^((?:ssh-|ecdsa-|sk-)[\w@.\-]+)\+(.+)$", host_key)   # '+' written for the space
        if m:
            host_key = f"{m.group(1)} {m.group(2)}"
    if host_key and not (re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}=?", host_key)
                         or re.fullmatch(r"[\w@.\-]+ [A-Za-z0-9+/]+=*", host_key)):
        problems.append(f"--sftp-admin: host_key {host_key!r}: expected '<type> <base64>' (as in Airflow's host_key "
                        "extra, space written %20) or 'SHA256:<fingerprint>' (ssh-keygen -lf)")
    if not host_key and not params.get("known_hosts"):
        problems.append("--sftp-admin: the server's host key must be pinned: add ?host_key=<type>%20<base64> "
                        "(or ?host_key=SHA256:<fingerprint>, or ?known_hosts=/path/to/known_hosts)")
    known_hosts = os.path.expanduser(params["known_hosts"]) if params.get("known_hosts") else None
    if known_hosts and not os.path.isfile(known_hosts):
        problems.append(f"--sftp-admin: known_hosts file {known_hosts} not found")
    key_file = os.path.expanduser(params["key_file"]) if params.get("key_file") else None
    if key_file and not os.path.isfile(key_file):
        problems.append(f"--sftp-admin: key_file {key_file} not found")
    if not parts.hostname:
        problems.append("--sftp-admin: no host in the URL")
    fail(problems)
    path = unquote(parts.path)
    base = path[3:] if path.startswith("/~/") else ("" if path in ("", "/~") else path)
    return SftpAdmin(spec, host=parts.hostname or "", port=port,
                     user=unquote(parts.username) if parts.username else None,
                     password=unquote(parts.password) if parts.password else os.environ.get(ENV_SFTP_PASSWORD),
                     key_file=key_file, host_key=host_key, known_hosts=known_hosts, base=base)


def _key_line(key) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _fingerprint(key) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _verify_host_key(admin: SftpAdmin, key) -> None:
    """Refuse any server whose key is not the pinned one (no trust on first use)."""
    import paramiko

    if admin.host_key:
        expected = admin.host_key
        ok = (_fingerprint(key) == expected.rstrip("=")) if expected.startswith("SHA256:") else (
            _key_line(key) == " ".join(expected.split()[:2]))
    else:
        entries = paramiko.HostKeys(admin.known_hosts)
        name = admin.host if admin.port == 22 else f"[{admin.host}]:{admin.port}"
        known = entries.lookup(name) or {}
        ok = key.get_name() in known and known[key.get_name()] == key
    if not ok:
        raise ServiceError(f"SFTP {admin.host}:{admin.port}: host key {key.get_name()} {_fingerprint(key)} is NOT the "
                           "pinned one: refused (check the key with the server's administrator)")


@dataclass
class SftpSession:
    remote: object          # rpu.sftp.Remote
    host: str
    port: int
    host_key: str           # "<type> <base64>" of the verified server
    base: str


def admin_from_connection(conn_id: str) -> SftpAdmin:
    """The admin account of an Airflow connection (read with the SFTP provider's hook, which parses the extras
    as the DAGs' connections are parsed). Its host key: the `host_key` extra, else ~/.ssh/known_hosts; whatever
    `no_host_key_check` says, the key is verified here. Extra `base_dir`: the base directory."""
    try:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        hook = SFTPHook(ssh_conn_id=conn_id, no_host_key_check=False)
        extra = hook.get_connection(conn_id).extra_dejson
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException & co (classes vary across versions)
        raise ProvisionError(f"refused, nothing was changed:\n  --sftp-admin {conn_id}: "
                             f"{type(exc).__name__}: {exc}") from exc
    known_hosts = os.path.expanduser("~/.ssh/known_hosts")
    host_key = _key_line(hook.host_key) if hook.host_key is not None else None
    if host_key is None and not os.path.isfile(known_hosts):
        raise ProvisionError(f"refused, nothing was changed:\n  --sftp-admin {conn_id}: the server's host key must "
                             f"be pinned: give the connection a host_key extra (or put the key in {known_hosts})")
    return SftpAdmin(conn_id, conn_id=conn_id, host=hook.remote_host, port=int(hook.port or 22), user=hook.username,
                     password=hook.password or None, key_file=hook.key_file, pkey=hook.pkey, host_key=host_key,
                     known_hosts=None if host_key else known_hosts, base=str(extra.get("base_dir", "")))


@contextmanager
def open_sftp_admin(admin: SftpAdmin) -> Iterator[SftpSession]:
    """An SFTP session as the admin account, on a server whose host key was checked first (before
    authenticating: no password is ever sent to an impostor)."""
    import paramiko


    try:
        sock = socket.create_connection((admin.host, admin.port), timeout=15)
    except OSError as exc:
        raise ServiceError(f"cannot reach the SFTP server {admin.host}:{admin.port}: {exc}") from exc
    transport = paramiko.Transport(sock)
    try:
        try:
            transport.start_client(timeout=15)
        except paramiko.SSHException as exc:
            raise ServiceError(f"SFTP {admin.host}:{admin.port}: SSH negotiation failed: {exc}") from exc
        key = transport.get_remote_server_key()
        _verify_host_key(admin, key)
        user = admin.user or os.environ.get("USER") or "root"
        try:
            if admin.pkey is not None:
                transport.auth_publickey(user, admin.pkey)
            elif admin.key_file:
                transport.auth_publickey(user, paramiko.PKey.from_path(admin.key_file))
            elif admin.password:
                transport.auth_password(user, admin.password)
            else:
                for agent_key in paramiko.Agent().get_keys():
                    try:
                        transport.auth_publickey(user, agent_key)
                        break
                    except paramiko.AuthenticationException:
                        continue
            if not transport.is_authenticated():
                raise paramiko.AuthenticationException(f"no password (${ENV_SFTP_PASSWORD}), key or agent key")
        except (paramiko.AuthenticationException, OSError) as exc:
            raise ServiceError(f"SFTP {admin.host}:{admin.port}: authentication of {user} failed: {exc}") from exc
        client = paramiko.SFTPClient.from_transport(transport)
        try:
            yield SftpSession(Remote(client), admin.host, admin.port, _key_line(key), admin.base)
        finally:
            client.close()
    finally:
        transport.close()


def tree_paths(region: Region, finesses: list[str], base: str) -> list[str]:
    """Every directory of the establishments' trees, as the admin account sees them."""
    out = []
    for f in finesses:
        for kind in KINDS:
            rel = region.remote_dir(kind, f)
            out.append(f"{base.rstrip('/')}/{rel.lstrip('/')}" if base else rel)
    return out


def create_tree(session: SftpSession, region: Region, finesses: list[str]) -> tuple[int, int]:
    """(created, already there) directories."""
    created = existing = 0
    for path in tree_paths(region, finesses, session.base):
        try:
            if session.remote.exists(path):
                existing += 1
                continue
            session.remote.makedirs(path)
            created += 1
        except OSError as exc:
            raise ServiceError(f"SFTP: cannot create {path}: {exc} — fix and run the same command again") from exc
    return created, existing


