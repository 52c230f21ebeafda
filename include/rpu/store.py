"""The regional PostgreSQL database: migrations, the COPY loader and the cancel-and-replace rule.

All SQL lives in include/sql (migrations/NNN_name.sql, queries/name.sql); this module runs it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from contextlib import contextmanager
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from rpu import resources
from rpu import visit_table

log = logging.getLogger(__name__)

SQL_DIR = resources.path("sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"
MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
LOCK_MIGRATE = 815_2006  # advisory lock id: one migrator at a time


class MigrationError(RuntimeError):
    pass


@lru_cache(maxsize=None)
def query(name: str) -> str:
    """The text of include/sql/queries/<name>.sql."""
    return (SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def fetch_one(conn, name: str, params: dict) -> dict | None:
    """The first row of the named query, as a dict (None when it returns no row)."""
    cur = conn.execute(query(name), params)
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row)) if row else None


def fetch_all(conn, name: str, params: dict) -> list[dict]:
    """Every row of the named query, as dicts."""
    cur = conn.execute(query(name), params)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur]


def connect(db_url: str, **kw):
    """A connection in autocommit mode: every unit of work is an explicit `with conn.transaction()`."""
    import psycopg

    kw.setdefault("autocommit", True)
    return psycopg.connect(db_url, **kw)


@contextmanager
def connection(db_url: str) -> Iterator:
    conn = connect(db_url)
    try:
        yield conn
    finally:
        conn.close()


def migrations(directory: Path | None = None) -> list[tuple[int, str, Path]]:
    out = []
    for p in sorted(Path(directory or MIGRATIONS_DIR).glob("*.sql")):
        m = MIGRATION_RE.match(p.name)
        if not m:
            raise MigrationError(f"{p}: migration files are named NNN_name.sql")
        out.append((int(m.group(1)), m.group(2), p))
    return out


def migrate(db_url: str, *, directory: Path | None = None, table: str = "schema_migration") -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; returns their names. `directory` and
    `table` (the record of what was applied) serve another schema kept the same way (rpu.national)."""
    applied_now = []
    with connection(db_url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_MIGRATE,))
        try:
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {table} (
                version integer PRIMARY KEY, name text NOT NULL, checksum char(64) NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
            conn.commit()
            done = {v: c for v, c in conn.execute(f"SELECT version, checksum FROM {table}")}
            conn.commit()
            for version, name, path in migrations(directory):
                text = path.read_text(encoding="utf-8")
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if version in done:
                    if done[version].strip() != checksum:
                        raise MigrationError(f"migration {path.name} was changed after being applied: "
                                             "write a new migration instead")
                    continue
                with conn.transaction():
                    conn.execute(text)
                    conn.execute(f"INSERT INTO {table} (version, name, checksum) VALUES (%s, %s, %s)",
                                 (version, name, checksum))
                applied_now.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_MIGRATE,))
            conn.commit()
    return applied_now


# --- COPY text rendering ------------------------------------------------------------------------------------
# Rows are rendered to PostgreSQL's COPY text format by hand: it is several times faster than per-value
# adaptation and lets the loader write large chunks.

_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESC = re.compile(r"[\\\t\n\r]").search   # almost never true: translate only then
_ARR_ESC = str.maketrans({"\\": "\\\\", '"': '\\"'})
NULL = "\\N"


def _text(v) -> str:
    if not v:
        return NULL
    return v.translate(_ESC) if _NEEDS_ESC(v) else v


def _array(values: list[str]) -> str:
    if not values:
        return "{}"
    return _text("{" + ",".join('"' + v.translate(_ARR_ESC) + '"' for v in values) + "}")


def _json(d: dict) -> str:
    return _text(json.dumps(d, ensure_ascii=False)) if d else "{}"


def _date(d: date | None) -> str:
    return d.isoformat() if d else NULL


def _ts(t: datetime | None) -> str:
    return t.isoformat(sep=" ") if t else NULL


# Stage columns (rpu.visit_table, generated from rpu_format): the checked visit, then the rejection fields.
STAGE_COLUMNS = visit_table.STAGE_COLUMNS
_VISIT_TAIL = "\t\\N\t\\N\t\\N\n"


def render_visit(r: tuple) -> str:
    """One checked visit row (rpu.checks.check_visit) as a line of COPY text. Runs once per visit: the text
    items are checked for characters to escape all at once (almost never any), then written as they are."""
    (idx, line, day, cp, commune, naissance, sexe, entree, mode_e, prov, transport, transport_pec, motif, gravite,
     dp, da, actes, sortie, mode_s, dest, orient, extra, raw_invalid, flags) = r
    if _NEEDS_ESC(f"{cp}{commune}{sexe}{mode_e}{prov}{transport}{transport_pec}{motif}{gravite}{dp}{mode_s}{dest}"
                  f"{orient}"):
        (cp, commune, sexe, mode_e, prov, transport, transport_pec, motif, gravite, dp, mode_s, dest, orient) = (
            v.translate(_ESC) for v in (cp, commune, sexe, mode_e, prov, transport, transport_pec, motif, gravite,
                                        dp, mode_s, dest, orient))
    N = NULL
    return (f"{idx}\t{line}\t{day.isoformat()}\t{cp or N}\t{commune or N}\t"
            f"{naissance.isoformat() if naissance else N}\t{sexe or N}\t{entree.isoformat(' ')}\t{mode_e or N}\t"
            f"{prov or N}\t{transport or N}\t{transport_pec or N}\t{motif or N}\t{gravite or N}\t{dp or N}\t"
            f"{_array(da) if da else '{}'}\t{_array(actes) if actes else '{}'}\t"
            f"{sortie.isoformat(' ') if sortie else N}\t{mode_s or N}\t{dest or N}\t{orient or N}\t"
            f"{_json(extra) if extra else '{}'}\t{_json(raw_invalid) if raw_invalid else '{}'}\t"
            f"{_array(flags) if flags else '{}'}" + _VISIT_TAIL)


def render_rejected(raw, problem) -> str:
    """A rejected visit: position, rule and the raw items, the visit columns left empty."""
    payload = dict(raw.items)
    if raw.da:
        payload["LISTE_DA"] = raw.da
    if raw.actes:
        payload["LISTE_ACTES"] = raw.actes
    if raw.extra:
        payload.update(raw.extra)
    return "\t".join([str(raw.idx), str(raw.line or 0)] + [NULL] * visit_table.EMPTY_IN_REJECTED + [
        _text(problem.rule), _text(problem.message), json.dumps(payload, ensure_ascii=False).translate(_ESC)]) + "\n"


class CopySink:
    """rpu.checks.VisitSink that streams rows into an open COPY, in large chunks."""

    FLUSH_AT = 1 << 20

    def __init__(self, copy):
        self.copy = copy
        self.buf: list[str] = []
        self.size = 0

    def _add(self, line: str) -> None:
        self.buf.append(line)
        self.size += len(line)
        if self.size >= self.FLUSH_AT:
            self.flush()

    def visit(self, row: tuple) -> None:
        self._add(render_visit(row))

    def rejected(self, raw, problem) -> None:
        self._add(render_rejected(raw, problem))

    def flush(self) -> None:
        if self.buf:
            self.copy.write("".join(self.buf).encode("utf-8"))
            self.buf.clear()
            self.size = 0


def create_stage(conn) -> None:
    conn.execute(query("create_stage"))


def copy_stage(conn):
    """Context manager: a COPY into the stage table. The plain libpq writer, not psycopg's default queued one:
    that one buffers up to a thousand chunks in memory when the server is slower than the file is read."""
    from psycopg.copy import LibpqWriter

    cur = conn.cursor()
    return cur.copy(f"COPY stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN", writer=LibpqWriter(cur))


def statements(name: str) -> list[str]:
    """The statements of a query file holding several (separated by `;` at the end of a line)."""
    return [s.strip() for s in re.split(r";\s*\n", query(name)) if s.strip() and not
            all(line.strip().startswith("--") or not line.strip() for line in s.splitlines())]


def _file_params(report, *, name, sha256, size, sender, status, archive_path, remote_path, received_at,
                 duplicate_of=None, loaded=0) -> dict:
    from psycopg.types.json import Jsonb

    d = report.as_dict() if report is not None else {}
    return dict(
        file_name=name, sha256=sha256, size_bytes=size, sender=sender,
        finess=getattr(report, "finess", None), etab=getattr(report, "etab", None),
        ordre=getattr(report, "ordre", None), extract=getattr(report, "extract", None),
        period_start=getattr(report, "period_start", None), period_end=getattr(report, "period_end", None),
        status=status, duplicate_of=duplicate_of,
        visits_total=d.get("visits", 0), visits_loaded=loaded, visits_rejected=d.get("visits_rejected", 0),
        visits_flagged=d.get("visits_flagged", 0), errors=Jsonb(d.get("errors", [])),
        warnings=Jsonb(d.get("warnings", [])), flags=Jsonb(d.get("flags", {})), per_day=Jsonb(d.get("per_day", {})),
        received_at=received_at, archive_path=str(archive_path) if archive_path else None, remote_path=remote_path,
    )


def find_duplicate(conn, sha256: str, who: str | None):
    """The accepted file of the same sender (`who`: the sender, else the establishment) with this content."""
    if not who:
        return None
    return conn.execute(query("find_duplicate"), {"sha256": sha256, "who": who}).fetchone()


def insert_file(conn, report, *, status: str, name: str, sha256: str | None, size: int, sender: str | None,
                archive_path=None, remote_path=None, received_at=None, duplicate_of=None) -> int:
    """Record a received file (its checks' report, or None for a duplicate) with its status; returns its id."""
    return conn.execute(query("insert_received_file"), _file_params(
        report, status=status, name=name, sha256=sha256, size=size, sender=sender, archive_path=archive_path,
        remote_path=remote_path, received_at=received_at, duplicate_of=duplicate_of)).fetchone()[0]


def lock_establishment(conn, etab: str) -> None:
    """One load at a time per establishment, until the end of the transaction (the quality gate takes the same
    key: quality_lock.sql)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('rpu-etab:' || %s))", (etab,))


def apply_stage(conn, file_id: int, report) -> tuple[list, list]:
    """The cancel-and-replace rule of an accepted file whose visits are in the stage: the days it applies (its
    period, unless newer data holds them) get its visits; returns (days applied, days kept for newer data)."""
    applied, kept = [], []
    if report.period_start is not None:
        applied, kept = conn.execute(query("replace_period"), dict(
            file_id=file_id, etab=report.etab, ordre=report.ordre, extract=report.extract,
            period_start=report.period_start, period_end=report.period_end)).fetchone()
    params = dict(file_id=file_id, etab=report.etab, ordre=report.ordre, applied=applied)
    loaded = 0
    for i, stmt in enumerate(statements("apply_stage")):
        cur = conn.execute(stmt, params)
        if i == 1:
            loaded = cur.rowcount
    conn.execute(query("finish_received_file"), dict(loaded=loaded, applied=applied, kept=kept, file_id=file_id))
    return applied, kept
