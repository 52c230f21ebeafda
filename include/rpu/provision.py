"""`rpu region add` and `rpu establishment add`: provisioning a region, then its establishments.

    rpu region add --code CODE --name NAME --timezone TZ [--establishments FILE.csv] [--old-concentrator]
                   [--admin-db URL] [--db-host HOST[:PORT]] [--rotate-password]
                   [--sftp-admin CONN_ID_OR_URL] [--regions-dir DIR] [--dags-dir DIR] [--create-connections]
    rpu establishment add --region CODE --finess F --name N [--finess-ej E] [--status active|shadow]
                   [--contact EMAIL] [--update] [--sftp-admin CONN_ID_OR_URL] [--regions-dir DIR]

Everything is checked before anything changes (exit 2 and every problem listed, nothing created); then the
servers are reached (exit 1 when one cannot be, still nothing created); then, in this order: the PostgreSQL
role and database (schema applied by the admin with `rpu.store.migrate`, least-privilege grants), the SFTP
tree, the region file, the region's DAG file, and the Airflow connections (printed, or created with
`--create-connections`). Every step is idempotent: a rerun with the same arguments changes nothing and
completes whatever an interrupted run left undone. See docs/provisioning.md.

Secrets: the role's password is random, sent to PostgreSQL only as a SCRAM-SHA-256 verifier computed here
(the clear password never reaches the server, its logs or a file) and printed once. No Airflow import at module
level (only for `--sftp-admin CONN_ID`, through the SFTP provider's hook).
"""
from __future__ import annotations

import argparse
import base64
import csv
import difflib
import hashlib
import hmac
import importlib.util
import io
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from rpu.config import (PROJECT_DIR, SCHEMA, ConfigError, Region, finess_is_valid, finess_with_key, parse_region,
                        regions_dir)

STATUSES = ("active", "shadow")
CSV_COLUMNS = ("finess", "name", "finess_ej", "status", "contact")
KINDS = ("inbox", "archive", "rejected", "ack")
CODE_RE = re.compile(SCHEMA["properties"]["code"]["pattern"])
EMAIL_RE = re.compile(SCHEMA["properties"]["establishments"]["items"]["properties"]["contact"]["pattern"])
ENV_ADMIN_DB = "RPU_ADMIN_DB"
ENV_SFTP_ADMIN = "RPU_SFTP_ADMIN"
ENV_SFTP_PASSWORD = "RPU_SFTP_ADMIN_PASSWORD"
SCRAM_ITERATIONS = 4096   # PostgreSQL's default scram_iterations


class ProvisionError(ValueError):
    """Bad input: nothing was changed (exit 2)."""


class ServiceError(RuntimeError):
    """A server could not be reached or refused an operation (exit 1)."""


def _fail(problems: list[str]) -> None:
    if problems:
        raise ProvisionError("\n  ".join(["refused, nothing was changed:", *problems]))


# --- input checks -----------------------------------------------------------------------------------------

def finess_problem(value: str, what: str = "FINESS") -> str | None:
    """Why `value` is not a valid FINESS number (None when it is)."""
    if finess_is_valid(value):
        return None
    if re.fullmatch(r"[0-9][0-9]{7}[0-9]", value or ""):
        return (f"{what} {value!r} has a wrong check key (9th digit, Luhn): with these 8 digits it would be "
                f"{finess_with_key(value[:8])!r}")
    return f"{what} {value!r} is not a FINESS number (9 characters: [0-9][0-9AB][0-9]{{7}}, the last a Luhn key)"


def timezone_problem(tz: str) -> str | None:
    try:
        ZoneInfo(tz)
        return None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(tz, sorted(available_timezones()), n=3, cutoff=0.6)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else " (IANA name expected, e.g. Europe/Paris, America/Cayenne)")
        return f"unknown time zone {tz!r}{hint}"


def establishment_problems(e: dict) -> list[str]:
    """Problems of one establishment's given fields (keys: those of CSV_COLUMNS that were given)."""
    out = []
    if not e.get("finess"):
        out.append("FINESS missing")
    else:
        p = finess_problem(e["finess"])
        if p:
            out.append(p)
    if not e.get("name"):
        out.append("name missing")
    if e.get("finess_ej"):
        p = finess_problem(e["finess_ej"], "FINESS EJ")
        if p:
            out.append(p)
        elif e["finess_ej"] == e.get("finess"):
            out.append(f"FINESS EJ {e['finess_ej']!r} equals the site's FINESS (ET): give the legal entity's number, "
                       "or none")
    if "status" in e and e["status"] not in STATUSES:
        out.append(f"status {e['status']!r}: expected active or shadow")
    if "contact" in e and not EMAIL_RE.match(e["contact"]):
        out.append(f"contact {e['contact']!r} is not an e-mail address")
    return out


def read_establishments_csv(path: Path) -> list[tuple[int, dict]]:
    """(line number, given fields) of each establishment of a `finess;name[;finess_ej[;status[;contact]]]` CSV
    with a header line (columns named as in CSV_COLUMNS, in any order). Raises ProvisionError naming every bad
    line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProvisionError(f"refused, nothing was changed:\n  {path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")    # a spreadsheet's "CSV (separator ;)" in Windows-1252
    problems: list[str] = []
    rows: list[tuple[int, dict]] = []
    header: list[str] | None = None
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    try:
        for cells in reader:
            line = reader.line_num
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if header is None:
                header = [c.lower() for c in cells]
                if len(header) == 1 and "," in header[0]:
                    problems.append(f"{path}:{line}: columns must be separated by ';' (not ',')")
                    break
                if finess_is_valid(cells[0]) or re.fullmatch(r"\d{9}", cells[0]):
                    problems.append(f"{path}:{line}: no header line: the first line must name the columns, "
                                    "e.g. finess;name;finess_ej;status;contact")
                    break
                unknown = [c for c in header if c not in CSV_COLUMNS]
                missing = [c for c in ("finess", "name") if c not in header]
                if unknown or missing or len(set(header)) != len(header):
                    problems.append(f"{path}:{line}: bad header {';'.join(cells)!r}: columns are "
                                    f"{';'.join(CSV_COLUMNS)} (finess and name required, each once)")
                    break
                continue
            if len(cells) > len(header):
                problems.append(f"{path}:{line}: {len(cells)} fields, the header has {len(header)} "
                                "(a ';' inside a name must be quoted: \"CH de A; site B\")")
                continue
            given = {k: v for k, v in zip(header, cells) if v}
            for p in establishment_problems(given):
                problems.append(f"{path}:{line}: {p}")
            f = given.get("finess")
            if f:
                if f in seen:
                    problems.append(f"{path}:{line}: FINESS {f} already on line {seen[f]}")
                seen.setdefault(f, line)
            rows.append((line, given))
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: malformed CSV: {exc}")
    if header is None and not problems:
        problems.append(f"{path}: empty file (expected a header line finess;name;... then one line per establishment)")
    _fail(problems)
    return rows


# --- region files: read, merge, write (comments and order kept) ---------------------------------------------

def _yaml(text: str | None = None):
    """A round-trip ruamel YAML whose indentation reproduces `text` (the demo style for a new file)."""
    from ruamel.yaml import YAML

    def make(m, s, o):
        y = YAML()
        y.preserve_quotes = True
        y.width = 4096
        y.indent(mapping=m, sequence=s, offset=o)
        return y

    if text is None:
        return make(2, 4, 2)
    best, best_diff = None, None
    for m, s, o in ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 4, 0), (4, 2, 0), (2, 3, 1)):
        y = make(m, s, o)
        try:
            out = io.StringIO()
            y.dump(y.load(text), out)
        except Exception:  # noqa: BLE001 - a configuration that cannot represent this file
            continue
        diff = sum(1 for a, b in zip(out.getvalue().splitlines(), text.splitlines()) if a != b)
        if best_diff is None or diff < best_diff:
            best, best_diff = y, diff
        if diff == 0:
            break
    return best or make(2, 4, 2)


def _dump(y, doc) -> str:
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _plain(doc) -> object:
    """A ruamel document as plain Python data (what yaml.safe_load would give)."""
    return json.loads(json.dumps(doc, default=str))


def _quoted(value: str):
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return DoubleQuotedScalarString(value)


def _entry(given: dict):
    """A region file's establishment entry, in the demo's style (quoted strings, keys in a fixed order)."""
    from ruamel.yaml.comments import CommentedMap

    m = CommentedMap()
    for k in ("finess", "finess_ej", "name", "status", "contact"):
        if given.get(k):
            m[k] = given[k] if k == "status" else _quoted(given[k])
    return m


def _differences(existing: dict, given: dict) -> list[str]:
    return [f"{k}: {existing.get(k)!r} in the file, {v!r} given" for k, v in given.items()
            if k != "finess" and str(existing.get(k) if existing.get(k) is not None else "") != v]


def merge_establishments(doc, rows: list[tuple[str, dict]], *, update: bool, default_status: str,
                         hint: str = "use --update to change it, or edit the region file") -> tuple[list, list]:
    """Add each (where, given) establishment to the document's list, or update it (`update`) when it differs.
    Returns (added, updated) FINESS lists; raises ProvisionError on a conflict without `update`."""
    from ruamel.yaml.comments import CommentedSeq

    if doc.get("establishments") is None:
        doc["establishments"] = CommentedSeq()
    entries = doc["establishments"]
    by_finess = {str(e.get("finess")): e for e in entries}
    added, updated, conflicts = [], [], []
    for where, given in rows:
        current = by_finess.get(given["finess"])
        if current is None:
            entry = _entry({"status": default_status, **given})
            entries.append(entry)
            by_finess[given["finess"]] = entry
            added.append(given["finess"])
            continue
        diff = _differences(current, given)
        if not diff:
            continue
        if not update:
            conflicts.append(f"{where}: establishment {given['finess']} is already declared with other data "
                             f"({'; '.join(diff)}): {hint}")
            continue
        for k, v in given.items():
            if k != "finess":
                current[k] = v if k == "status" else _quoted(v)
        updated.append(given["finess"])
    _fail(conflicts)
    return added, updated


def merge_alerts(doc, ars: list[str], ops: list[str], ars_none: bool) -> bool:
    """Add the given ARS and operations addresses (and ars_none) to the region file's `alerts`; True if it
    changed. Addresses already there are kept: removing one is an edit of the file."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not (ars or ops or ars_none):
        return False
    alerts = doc.setdefault("alerts", CommentedMap())
    changed = False
    for key, given in (("ars", ars), ("ops", ops)):
        for address in given:
            current = alerts.setdefault(key, CommentedSeq())
            if address not in current:
                current.append(address)
                changed = True
    if ars_none and not alerts.get("ars_none"):
        alerts["ars_none"] = True
        changed = True
    return changed


def new_region_doc(code: str, name: str, timezone: str, old_concentrator: bool):
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    doc = CommentedMap()
    doc["code"] = code
    doc["name"] = name
    doc["timezone"] = timezone
    if old_concentrator:
        doc["old_concentrator"] = True
    doc["establishments"] = CommentedSeq()
    doc.yaml_set_start_comment(
        f"Region {name} ({code}), written by `rpu region add`. Only what differs from the defaults\n"
        "(docs/intake.md#region-files). Add establishments with "
        f"`rpu establishment add --region {code} --finess ... --name ...`.")
    return doc


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader (the DAG processor) never sees it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stub_text(code: str, dags_dir: Path) -> str:
    """`rpu_dags.stub_text(code)`, from the DAG folder's own rpu_dags package (else the project's)."""
    for d in (Path(dags_dir), PROJECT_DIR / "dags"):
        init = d / "rpu_dags" / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location("_rpu_dags_for_stub", init)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.stub_text(code)
    raise ProvisionError(f"no rpu_dags package in {dags_dir} nor in {PROJECT_DIR / 'dags'}")


def _other_regions_declaring(directory: Path, code: str, finesses: set[str]) -> list[str]:
    """Warnings: FINESS numbers also declared in another region file."""
    import yaml

    out = []
    for p in sorted(Path(directory).glob("*.yaml")):
        if p.stem == code:
            continue
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            theirs = {str(e.get("finess")) for e in data.get("establishments") or ()}
        except Exception:  # noqa: BLE001 - a broken file of another region is not our business here
            continue
        for f in sorted(finesses & theirs):
            out.append(f"warning: establishment {f} is also declared in {p}")
    return out


# --- PostgreSQL ---------------------------------------------------------------------------------------------

def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as libpq's
    PQencryptPasswordConn computes it): only this is sent to the server."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def new_password() -> str:
    return secrets.token_urlsafe(24)     # 192 random bits, URL-safe: no quoting needed anywhere


def _conninfo(url: str, **override) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, **override)


def _conn_params(url: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(url)


def check_admin_url(url: str) -> str | None:
    try:
        _conn_params(url)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError: not a conninfo/URL
        return f"--admin-db: not a PostgreSQL URL or conninfo ({str(exc).strip()})"
    return None


def _where(url: str) -> str:
    p = _conn_params(url)
    return f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}"


@dataclass
class DbPlan:
    role_exists: bool
    db_exists: bool
    admin_user: str


@dataclass
class DbResult:
    role: str
    database: str
    role_created: bool = False
    password_set: bool = False
    db_created: bool = False
    attributes_fixed: list[str] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


ROLE_ATTRIBUTES = {"rolsuper": "NOSUPERUSER", "rolcreatedb": "NOCREATEDB", "rolcreaterole": "NOCREATEROLE",
                   "rolreplication": "NOREPLICATION", "rolbypassrls": "NOBYPASSRLS"}


def db_preflight(admin_url: str, name: str) -> DbPlan:
    """Reach the admin server and check that this account may do what is left to do. Changes nothing."""
    import psycopg

    try:
        with psycopg.connect(_conninfo(admin_url, connect_timeout=10), autocommit=True) as conn:
            user, sup, createrole, createdb = conn.execute(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
            db_exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    except psycopg.OperationalError as exc:
        raise ServiceError(f"cannot connect to the admin database at {_where(admin_url)}: {str(exc).strip()}") from exc
    missing = []
    if not role_exists and not (sup or createrole):
        missing.append(f"{user} may not create roles (CREATEROLE)")
    if not db_exists and not (sup or createdb):
        missing.append(f"{user} may not create databases (CREATEDB)")
    if missing:
        raise ServiceError("the --admin-db account cannot provision: " + "; ".join(missing))
    return DbPlan(role_exists, db_exists, user)


def provision_database(admin_url: str, code: str, *, rotate: bool, password: str | None) -> DbResult:
    """Role `rpu_<code>` (login, owns nothing) and database `rpu_<code>` (owned by the admin account), the
    schema applied by the admin, and the grants the concentrator needs — no more. Idempotent: an existing role
    keeps its password unless `rotate`. `password` is the new password when one must be set."""
    import psycopg
    from psycopg import sql

    from rpu import store

    name = f"rpu_{code}"
    res = DbResult(role=name, database=name)
    role, db = sql.Identifier(name), sql.Identifier(name)
    try:
        with psycopg.connect(_conninfo(admin_url, connect_timeout=10), autocommit=True) as conn:
            admin = conn.execute("SELECT current_user").fetchone()[0]
            row = conn.execute(f"SELECT {', '.join(ROLE_ATTRIBUTES)}, rolcanlogin FROM pg_roles WHERE rolname = %s",
                               (name,)).fetchone()
            if (row is None or rotate) and not password:
                raise ServiceError(f"role {name} changed since it was checked: run the same command again")
            if row is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                     "NOBYPASSRLS INHERIT PASSWORD {}").format(
                                         role, sql.Literal(scram_verifier(password))))
                res.role_created = res.password_set = True
            else:
                fixes = [ROLE_ATTRIBUTES[k] for k, v in zip(ROLE_ATTRIBUTES, row) if v]
                if not row[-1]:
                    fixes.append("LOGIN")
                if fixes:
                    conn.execute(sql.SQL("ALTER ROLE {} " + " ".join(fixes)).format(role))
                    res.attributes_fixed = fixes
                if rotate:
                    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        role, sql.Literal(scram_verifier(password))))
                    res.password_set = True
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()
            if owner is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(db))
                    res.db_created = True
                except psycopg.errors.DuplicateDatabase:
                    pass
            elif owner[0] == name:
                res.warnings.append(f"database {name} is owned by the role {name}: more than it needs; "
                                    f"ALTER DATABASE {name} OWNER TO {admin}")
            # nobody but the role (and superusers) may connect; TEMPORARY: the loader's stage table
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, role))
        db_url = _conninfo(admin_url, dbname=name, connect_timeout=10)
        with psycopg.connect(db_url, autocommit=True) as conn:
            try:
                conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
            except psycopg.errors.InsufficientPrivilege:
                # PostgreSQL < 15: schema public belongs to the bootstrap superuser, not to the database's owner
                res.warnings.append(f"could not take PUBLIC's rights on schema public of {name} (its owner is not "
                                    f"{admin}): as a superuser, in {name}: REVOKE ALL ON SCHEMA public FROM PUBLIC; "
                                    f"GRANT USAGE ON SCHEMA public TO {name}")
        res.migrations = store.migrate(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
            admin_role = sql.Identifier(admin)
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}")
                         .format(role))
            conn.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migration FROM {}").format(role))
            conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
            conn.execute(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}").format(role))
            # the quality gate creates (and drops) one view per batch in its own schema, never in public
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA rpu_quality TO {}").format(role))
            # tables of later migrations (`rpu db migrate` with this admin account) get the same grants
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, "
                                 "DELETE ON TABLES TO {}").format(admin_role, role))
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE ON SEQUENCES "
                                 "TO {}").format(admin_role, role))
    except psycopg.Error as exc:
        raise ServiceError(f"PostgreSQL at {_where(admin_url)}: {str(exc).strip()} — fix and run the same command "
                           "again (every step is idempotent)") from exc
    return res


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
    _fail(problems)
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

    from rpu.sftp import Remote

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
                                   f"at {region.sftp_base_dir or 'its login directory'})"))
    else:
        specs.append(ConnSpec(region.sftp_intake_conn_id, _sftp_uri("<host>", 22, None), False,
                              note="the concentrator's account on the intake server"))
    for r in region.recipients.values():
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


# --- commands -----------------------------------------------------------------------------------------------

def _load_existing(path: Path):
    """(ruamel YAML, document, text) of an existing region file, after checking it is valid."""
    text = path.read_text(encoding="utf-8")
    y = _yaml(text)
    try:
        doc = y.load(text)
        parse_region(_plain(doc), path)
    except ConfigError as exc:
        raise ProvisionError(f"refused, nothing was changed: the existing region file is invalid, fix it first:\n  "
                             f"{exc}") from exc
    except Exception as exc:  # noqa: BLE001 - ruamel's YAMLError
        raise ProvisionError(f"refused, nothing was changed: {path}: not valid YAML: {exc}") from exc
    return y, doc, text


def _validated(doc, path: Path) -> Region:
    try:
        return parse_region(_plain(doc), path)
    except ConfigError as exc:
        hint = ("\n  (`rpu region add` sets them: --ars-email EMAIL, or --ars-none)" if "alerts.ars:" in str(exc)
                else "")
        raise ProvisionError(f"refused, nothing was changed:\n  {exc}{hint}") from exc


def _db_host(args, admin_url: str | None) -> str | None:
    if args.db_host:
        return args.db_host if ":" in args.db_host else f"{args.db_host}:5432"
    if not admin_url:
        return None
    p = _conn_params(admin_url)
    host = p.get("host") or "localhost"
    if host.startswith("/"):
        return None         # a Unix socket directory means nothing to Airflow's workers: --db-host
    return f"{host}:{p.get('port') or 5432}"


@dataclass
class _Run:
    """What a `region add` run did so far: printed even when a later step fails (the password above all)."""
    out: list[str] = field(default_factory=list)
    password: str | None = None
    password_shown: bool = False


def cmd_region_add(args) -> int:
    run = _Run()
    try:
        return _region_add(args, run)
    except ProvisionError as exc:
        print(f"rpu region add: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        if run.out:
            print("\n".join(run.out), flush=True)
        print(f"rpu region add: {exc}", file=sys.stderr)
        return 1
    finally:
        if run.password and not run.password_shown:   # set before a failure: not lost (shown once, here)
            print(f"password of role rpu_{args.code} (set before the failure; shown once, stored nowhere): "
                  f"{run.password}", flush=True)


def _region_add(args, run: _Run) -> int:
    out = run.out
    code, name, tz = args.code, args.name.strip(), args.timezone
    rdir = Path(args.regions_dir or regions_dir())
    ddir = Path(args.dags_dir or PROJECT_DIR / "dags")
    problems = []
    if not CODE_RE.match(code):
        problems.append(f"code {code!r}: lower-case letters, digits and '_', starting with a letter, 2–31 characters")
    if not name:
        problems.append("--name is empty")
    p = timezone_problem(tz)
    if p:
        problems.append(p)
    rows: list[tuple[int, dict]] = []
    if args.establishments:
        try:
            rows = read_establishments_csv(Path(args.establishments))
        except ProvisionError as exc:
            problems += str(exc).split("\n  ")[1:]
    problems += [f"--{opt.replace('_', '-')} {a!r} is not an e-mail address"
                 for opt in ("ars_email", "ops_email") for a in getattr(args, opt) or [] if not EMAIL_RE.match(a)]
    admin_url = args.admin_db
    if admin_url:
        p = check_admin_url(admin_url)
        if p:
            problems.append(p)
    sftp_admin = _sftp_admin_arg(args.sftp_admin, problems)
    path = rdir / f"{code}.yaml"
    if CODE_RE.match(code) and path.exists():
        y, doc, before = _load_existing(path)
        diffs = []
        if str(doc.get("name")) != name:
            diffs.append(f"name {doc.get('name')!r}")
        if str(doc.get("timezone")) != tz:
            diffs.append(f"time zone {doc.get('timezone')!r}")
        if args.old_concentrator and not doc.get("old_concentrator"):
            diffs.append("no old_concentrator")
        if diffs:
            problems.insert(0, f"duplicate code: region {code!r} already exists in {path} with {', '.join(diffs)}: "
                               "choose another code (or give exactly the same --name and --timezone to complete "
                               "its provisioning)")
    _fail(problems)
    if not path.exists():
        y, doc, before = _yaml(), new_region_doc(code, name, tz, args.old_concentrator), None
    old = bool(doc.get("old_concentrator"))
    alerts_changed = merge_alerts(doc, args.ars_email or [], args.ops_email or [], args.ars_none)
    added, _ = merge_establishments(doc, [(f"{args.establishments}:{line}", given) for line, given in rows],
                                    update=False, default_status="shadow" if old else "active",
                                    hint="change it with `rpu establishment add --update`, or edit the region file")
    region = _validated(doc, path)
    text = _dump(y, doc) if (before is None or added or alerts_changed) else before
    stub = stub_text(code, ddir)
    warnings = _other_regions_declaring(rdir, code, {g["finess"] for _, g in rows})

    # servers: reached (and checked) before anything changes
    plan = db_preflight(admin_url, f"rpu_{code}") if admin_url else None
    with (open_sftp_admin(sftp_admin) if sftp_admin else _nothing()) as session:
        out.append(f"region {code} — {name} ({tz})"
                   + (" — transition: new establishments start in shadow" if old else ""))
        password = None
        if plan:
            password = run.password = new_password() if (not plan.role_exists or args.rotate_password) else None
            db = provision_database(admin_url, code, rotate=args.rotate_password, password=password)
            out.append(f"  database   {db.database} on {_where(admin_url)}: "
                       f"{'created' if db.db_created else 'exists'}; "
                       f"role {db.role}: {'created' if db.role_created else 'exists'}"
                       f"{', password rotated' if db.password_set and not db.role_created else ''}"
                       f"{', fixed ' + ' '.join(db.attributes_fixed) if db.attributes_fixed else ''}; "
                       f"schema: {'applied ' + ', '.join(db.migrations) if db.migrations else 'up to date'}; "
                       "grants: CONNECT+TEMPORARY, USAGE on public, DML on tables, USAGE on sequences")
            warnings += [f"warning: {w}" for w in db.warnings]
        else:
            out.append("  database   skipped (no --admin-db)")
        if session:
            created, there = create_tree(session, region, [e.finess for e in region.establishments])
            out.append(f"  SFTP       {len(region.establishments)} establishment(s) × {len(KINDS)} directories on "
                       f"{sftp_admin.display}: {created} created, {there} already there")
        else:
            out.append("  SFTP       skipped (no --sftp-admin)")
        if before is None or text != before:
            write_atomic(path, text)
            out.append(f"  region     {path}: {'written' if before is None else 'updated'} "
                       f"({len(region.establishments)} establishment(s)"
                       f"{', added ' + ' '.join(added) if before else ''})")
        else:
            out.append(f"  region     {path}: unchanged ({len(region.establishments)} establishment(s))")
        stub_path = ddir / f"region_{code}.py"
        if stub_path.exists() and stub_path.read_text(encoding="utf-8") == stub:
            out.append(f"  DAG file   {stub_path}: unchanged")
        else:
            state = "rewritten (it differed from the stub)" if stub_path.exists() else "written"
            write_atomic(stub_path, stub)
            out.append(f"  DAG file   {stub_path}: {state}")

        specs = connection_specs(region, db_host=_db_host(args, admin_url), password=password, sftp=session,
                                 rotated=bool(plan and plan.role_exists and password))
    out.append("")
    if args.create_connections:
        out.append("Airflow connections:")
        lines, rest = create_connections(specs, password)
        out += [f"  {line}" for line in lines]
        if password:
            out.append(f"  password of role rpu_{code} (shown once, stored nowhere else): {password}")
        if rest:
            out.append("To complete (placeholders <…>) and create:")
    else:
        out.append("Airflow connections to create (or rerun with --create-connections):")
        rest = specs
    for s in rest:
        out.append(f"  {s.command()}" + (f"    # {s.note}" if s.note else ""))
    if password and not args.create_connections:
        out.append(f"  (the password of role rpu_{code} is in the command above, shown this once: "
                   "it is stored nowhere)")
    out.append("")
    out.append("Next: create the intake accounts (one per establishment, chrooted to its directory; the "
               "concentrator's, seeing the whole tree), then `rpu roles sync` (role ARS_" + code + ") before the DAGs "
               "are parsed.")
    print("\n".join(out + warnings), flush=True)
    run.password_shown = True
    return 0


@contextmanager
def _nothing():
    yield None


def cmd_establishment_add(args) -> int:
    try:
        return _establishment_add(args)
    except ProvisionError as exc:
        print(f"rpu establishment add: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"rpu establishment add: {exc}", file=sys.stderr)
        return 1


def _establishment_add(args) -> int:
    rdir = Path(args.regions_dir or regions_dir())
    fields = (("finess", args.finess), ("name", args.name), ("finess_ej", args.finess_ej), ("status", args.status),
              ("contact", args.contact))
    given = {k: v.strip() for k, v in fields if v is not None and v.strip()}
    problems = establishment_problems(given)
    path = rdir / f"{args.region}.yaml"
    if not CODE_RE.match(args.region):
        problems.append(f"region {args.region!r} is not a region code")
    elif not path.exists():
        known = ", ".join(p.stem for p in sorted(rdir.glob("*.yaml"))) or "none"
        problems.append(f"unknown region {args.region!r} (no {path}); known regions: {known}")
    sftp_admin = _sftp_admin_arg(args.sftp_admin, problems)
    _fail(problems)

    y, doc, before = _load_existing(path)
    old = bool(doc.get("old_concentrator"))
    added, updated = merge_establishments(doc, [("--finess", given)], update=args.update,
                                          default_status="shadow" if old else "active")
    region = _validated(doc, path)
    text = _dump(y, doc) if (added or updated) else before
    warnings = _other_regions_declaring(rdir, region.code, {given["finess"]})
    etab = region.establishment(given["finess"])

    with (open_sftp_admin(sftp_admin) if sftp_admin else _nothing()) as session:
        out = [f"establishment {etab.finess} — {etab.name} — region {region.code}: status {etab.status}"
               + (" (the region has an older concentrator: switch it to active once it has 7 days of correct files)"
                  if etab.status == "shadow" else "")]
        if session:
            created, there = create_tree(session, region, [etab.finess])
            out.append(f"  SFTP       {len(KINDS)} directories on {sftp_admin.display}: {created} created, "
                       f"{there} already there")
        else:
            out.append("  SFTP       skipped (no --sftp-admin)")
        if text != before:
            write_atomic(path, text)
            out.append(f"  region     {path}: {'added' if added else 'updated'}")
        else:
            out.append(f"  region     {path}: unchanged (already declared with these data)")
    home = region.remote_dir("inbox", etab.finess).rsplit("/", 1)[0]
    out.append(f"Next: create its SFTP account, chrooted to its directory {home}"
               f", then `rpu roles sync` (role Lecteur_{etab.finess}). The region's DAGs take it at their next parse.")
    print("\n".join(out + warnings), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `region add` and `establishment add` to the `rpu` command."""
    sftp_help = (f"intake SFTP server's admin account: an Airflow connection id (host key verified; extra base_dir), "
                 f"or sftp://user@host:port/BASE?host_key=<type>%%20<base64> (or known_hosts=PATH; key_file=PATH; "
                 f"password in ${ENV_SFTP_PASSWORD}); default ${ENV_SFTP_ADMIN}")
    rdir_help = "directory of the region files (default $RPU_REGIONS_DIR, else config/regions)"

    r = subparsers.add_parser("region", help="provision a region (region file, database, SFTP tree, DAG file)")
    rsub = r.add_subparsers(dest="region_command", required=True, metavar="ACTION")
    a = rsub.add_parser(
        "add", help="create everything a new region needs (idempotent)",
        description="Create a region: its region file, its PostgreSQL database and least-privilege role (schema "
                    "applied), its establishments' SFTP trees, its DAG file, and the Airflow connections to create. "
                    "Everything is checked first; a rerun changes nothing. Exit 0 done, 1 a server failed, "
                    "2 refused (bad input; nothing changed).")
    a.add_argument("--code", required=True, help="region code: [a-z][a-z0-9_], e.g. ara, guyane")
    a.add_argument("--name", required=True, help="region name")
    a.add_argument("--timezone", required=True, help="IANA time zone, e.g. Europe/Paris, America/Cayenne")
    a.add_argument("--establishments", metavar="FILE.csv",
                   help="establishments, ';'-separated with a header: finess;name[;finess_ej[;status[;contact]]]")
    a.add_argument("--old-concentrator", action="store_true",
                   help="the region already has a concentrator: new establishments start in shadow")
    a.add_argument("--ars-email", metavar="EMAIL", action="append",
                   help="the ARS's watch address (alerts.ars; repeat for several): required once an establishment "
                        "is active, unless --ars-none")
    a.add_argument("--ars-none", action="store_true",
                   help="run without ARS mails, on purpose (alerts.ars_none: true)")
    a.add_argument("--ops-email", metavar="EMAIL", action="append",
                   help="operations' address (alerts.ops; repeat for several): failed runs, late sends, refused "
                        "addresses")
    a.add_argument("--admin-db", metavar="URL", default=os.environ.get(ENV_ADMIN_DB),
                   help=f"PostgreSQL admin URL (CREATEROLE+CREATEDB; password in ~/.pgpass or PGPASSWORD rather than "
                        f"in the URL); default ${ENV_ADMIN_DB}; without it the database step is skipped")
    a.add_argument("--db-host", metavar="HOST[:PORT]",
                   help="the database server as Airflow's workers reach it (default: the admin URL's host and port)")
    a.add_argument("--rotate-password", action="store_true", help="set a new password on an existing role")
    a.add_argument("--sftp-admin", metavar="CONN_OR_URL", default=os.environ.get(ENV_SFTP_ADMIN), help=sftp_help)
    a.add_argument("--regions-dir", metavar="DIR", help=rdir_help)
    a.add_argument("--dags-dir", metavar="DIR", help="the DAG folder (default: the project's dags/)")
    a.add_argument("--create-connections", action="store_true",
                   help="run `airflow connections add` for the complete connections missing (others are printed)")
    a.set_defaults(func=cmd_region_add)

    e = subparsers.add_parser("establishment", help="add an establishment to a region")
    esub = e.add_subparsers(dest="establishment_command", required=True, metavar="ACTION")
    ea = esub.add_parser(
        "add", help="declare an establishment in its region file and create its SFTP tree (idempotent)",
        description="Add an establishment to a region file (checked before writing) and create its SFTP directories. "
                    "Same data again: nothing changes (exit 0); other data for the same FINESS: refused unless "
                    "--update. Exit 2 refused, 1 a server failed.")
    ea.add_argument("--region", required=True, help="region code")
    ea.add_argument("--finess", required=True, help="FINESS of the site (ET), 9 characters with its Luhn key")
    ea.add_argument("--name", required=True)
    ea.add_argument("--finess-ej", metavar="FINESS", help="FINESS of the legal entity (EJ)")
    ea.add_argument("--status", choices=STATUSES,
                    help="default: shadow when the region has old_concentrator: true, else active")
    ea.add_argument("--contact", metavar="EMAIL", help="technical contact's e-mail")
    ea.add_argument("--update", action="store_true", help="change an establishment already declared")
    ea.add_argument("--sftp-admin", metavar="CONN_OR_URL", default=os.environ.get(ENV_SFTP_ADMIN), help=sftp_help)
    ea.add_argument("--regions-dir", metavar="DIR", help=rdir_help)
    ea.set_defaults(func=cmd_establishment_add)
