"""The quality gate of the intake: once per intake run (`gate_pending`, the `gate` task of the intake DAG after its
mapped loads; `rpu ingest FILE...` after all its files), over every accepted batch still waiting for its gate — this
run's and those of an earlier run that stopped between a load and its gate. Great Expectations is imported once,
with one context and one SQL datasource for the whole gate; each file is judged on its own batch (a view
`rpu_quality.batch_<file id>`, a table asset of that datasource): both suites, results stored per file in a
transaction of the file's own, a failed blocking expectation quarantines that file only.

Locking: the gate holds the load lock of every establishment it judges (the key rpu.loader.load_file takes), taken
in sorted order at the start and released at the end, so that no load changes a batch while it is being judged.
Loads of other establishments go on; a file loaded meanwhile for a locked establishment waits for the gate's end
(a few seconds) and is judged by the next one.
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack, contextmanager
from datetime import timedelta

from rpu import faults, store
from rpu.quality.batch import batch_view_sql, count_parameters, days_frame
from rpu.expectations import BATCH_SUITE, SUITES, VISIT_SUITE, blocking_problems
from rpu.quality import gx
from rpu.quality.gx import QualityError
from rpu.quality.results import file_quality

log = logging.getLogger(__name__)


def gate_needed(conn, file_id: int) -> bool:
    """An accepted file whose gate has not run yet (a first load, or a rerun after a crash before the gate)."""
    row = store.fetch_one(conn, "quality_gate_needed", {"file_id": file_id})
    return bool(row and row["needed"])


@contextmanager
def _establishment_lock(conn, etab: str):
    """The establishment's load lock (the key rpu.loader.load_file takes) for the time of the gate: no load of the
    same establishment changes the batch's visits between GX's queries."""
    conn.execute(store.query("quality_lock"), {"etab": etab})
    try:
        yield
    finally:
        conn.execute(store.query("quality_unlock"), {"etab": etab})


@contextmanager
def _batch_view(conn, file_id: int):
    """The view GX reads (rpu_quality.batch_<file id>), committed for its connections, dropped afterwards."""
    from psycopg import sql

    for (name,) in conn.execute(store.query("quality_leftover_views")).fetchall():
        conn.execute(sql.SQL("DROP VIEW IF EXISTS rpu_quality.{}").format(sql.Identifier(name)))
    conn.execute(batch_view_sql("quality_batch_view", file_id))
    try:
        yield f"batch_{int(file_id)}"
    finally:
        conn.execute(batch_view_sql("quality_batch_drop", file_id))


def pending_files(conn) -> list[dict]:
    """The accepted files whose batch waits for its gate, oldest first ({id, status, etab, ordre})."""
    return store.fetch_all(conn, "quality_pending", {})


class _Session:
    """What a gate sets up once for all its batches, on first need: GX (imported once), one ephemeral context,
    one SQL datasource on the regional database."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.stack = ExitStack()
        self.ctx = None
        self.source = None

    def context(self):
        if self.ctx is None:
            self.ctx = gx.context()
        return self.ctx

    def sql_source(self):
        if self.source is None:
            self.source = self.stack.enter_context(gx.sql_source(self.context(), self.db_url))
        return self.source

    def close(self) -> None:
        self.stack.close()


def gate_pending(conn, region, db_url: str, *, only=None, on_judged=None) -> list[dict]:
    """Run the gate over every batch waiting for it (or, `only`, those of these file ids): GX set up once, each
    file judged on its own batch and its results stored in a transaction of its own; returns one
    {file_id, status, quarantined} per file judged, in order (also handed to `on_judged` as soon as that file's
    results are stored: the intake writes its receipt again). A failure of GX, of a query of the gate or of the
    configuration on a file is recorded as that file's gate error (status `error`, with the reason), not raised;
    only a failure to store results (the database gone) propagates — the next gate finds the files still
    pending and judges them."""
    wanted = None if only is None else {int(i) for i in only}
    candidates = [f for f in pending_files(conn) if wanted is None or f["id"] in wanted]
    if not candidates:
        return []
    started = time.perf_counter()
    etabs = sorted({f["etab"] for f in candidates})
    out = []
    with _establishment_locks(conn, etabs):
        # under the locks: the pending files of these establishments as they are now (none changes until the end)
        files = [f for f in pending_files(conn) if f["etab"] in etabs and (wanted is None or f["id"] in wanted)]
        session = _Session(db_url)
        try:
            for f in files:
                out.append(_gate_file(conn, region, db_url, f, session))
                if on_judged is not None:
                    on_judged(out[-1])
        finally:
            session.close()
    log.info("quality gate: %d batch(es) judged in %.1f s%s", len(out), time.perf_counter() - started,
             "".join(f"; file #{r['file_id']} quarantined" for r in out if r["quarantined"]))
    return out


def run_gate(conn, region, db_url: str, file_id: int) -> dict:
    """The gate of one accepted file (judged again even when it ran before); returns `file_quality(conn, file_id)`."""
    f = store.fetch_one(conn, "quality_file", {"file_id": file_id})
    if f is None or f["status"] != "accepted":
        raise ValueError(f"file #{file_id} is not an accepted file")
    session = _Session(db_url)
    try:
        with _establishment_lock(conn, f["etab"]):
            _gate_file(conn, region, db_url, f, session)
    finally:
        session.close()
    return file_quality(conn, file_id, region.tz)


@contextmanager
def _establishment_locks(conn, etabs: list[str]):
    """The load locks of several establishments, taken in sorted order (two gates never wait for each other
    crosswise), released at the end."""
    with ExitStack() as stack:
        for etab in sorted(set(etabs)):
            stack.enter_context(_establishment_lock(conn, etab))
        yield


def _gate_file(conn, region, db_url: str, f: dict, session: _Session) -> dict:
    """Judge one file's batch (its establishment's lock held by the caller) and store the results."""
    file_id = f["id"]
    blocking = set(region.quality.blocking)
    runs: list[dict] = []
    started = time.perf_counter()
    try:
        problems = blocking_problems(sorted(blocking))
        if problems:
            raise QualityError("; ".join(problems))
        days = {r[0]: int(r[1]) for r in conn.execute(store.query("quality_days"), {"file_id": file_id})}
        if not days or sum(days.values()) == 0:
            runs = [gx.suite_run(s, "sql", status="skipped", error="lot vide : aucun passage enregistré",
                                 started=started) for s in SUITES]
        else:
            if store.fetch_one(conn, "quality_analyze_needed", {"rows": sum(days.values())})["needed"]:
                conn.execute(store.query("quality_analyze"))
            since = min(days) - timedelta(weeks=region.watch.history_weeks)
            history = [int(r[1]) for r in conn.execute(store.query("quality_history"), dict(
                etab=f["etab"], ordre=f["ordre"], since=since, until=min(days)))]
            with _batch_view(conn, file_id) as view:
                runs.append(gx.suite_run(VISIT_SUITE, "sql", gx.visit_suite_sql(session.sql_source(), view),
                                         started=started))
            runs.append(gx.pandas_run(session.context(), BATCH_SUITE, days_frame(days),
                                      count_parameters(history, len(days))))
    except Exception as exc:   # the gate's own failure is a result, not a crash of the intake
        message = _safe_message(exc, db_url)
        if faults.db_error(exc) is not None:   # its text may quote a visit's value: SQLSTATE and place only
            log.error("quality gate of file #%s failed: %s", file_id, message)
        else:
            log.exception("quality gate of file #%s failed", file_id)
        done = {r["suite"] for r in runs}
        runs += [gx.suite_run(s, "sql" if s == VISIT_SUITE else "pandas", error=message, status="error",
                              started=started) for s in SUITES if s not in done]
    held = sorted({o["name"] for r in runs for o in r["results"] if not o["success"] and o["name"] in blocking})
    if blocking and any(r["status"] == "error" for r in runs):
        held.append("GATE_ERROR")
    with conn.transaction():
        for r in runs:
            run_id = conn.execute(store.query("quality_run_insert"), dict(
                file_id=file_id, suite=r["suite"], version=r["version"], status=r["status"], engine=r["engine"],
                error=r["error"], parameters=_json(r["parameters"]), statistics=_json(r["statistics"]),
                duration_s=r["duration_s"])).fetchone()[0]
            for o in r["results"]:
                conn.execute(store.query("quality_result_insert"), dict(
                    run_id=run_id, expectation=o["name"], type=o["type"], column_name=o["column"],
                    success=o["success"], blocking=o["name"] in blocking, element_count=o["element_count"],
                    unexpected_count=o["unexpected_count"], unexpected_percent=o["unexpected_percent"],
                    missing_count=o["missing_count"], observed_value=_json(o["observed_value"]),
                    details=_json(o["details"]), error=o["error"]))
        if held:
            conn.execute(store.query("quality_quarantine_insert"), {"file_id": file_id, "expectations": held})
        conn.execute(store.query("quality_gate_done"), {"file_id": file_id})
    log.info("quality gate of file #%s: %s%s in %.1f s", file_id,
             ", ".join(f"{r['suite']} {r['status']}" for r in runs), f", quarantined ({', '.join(held)})"
             if held else "", time.perf_counter() - started)
    status = next(s for s in ("error", "failed", "skipped", "passed") if s in {r["status"] for r in runs})
    return {"file_id": file_id, "status": status, "quarantined": bool(held)}


def _json(v):
    from psycopg.types.json import Jsonb

    return Jsonb(gx.jsonable(v))


def _safe_message(exc: BaseException, db_url: str) -> str:
    """The exception in one line, without the database password if the driver echoed it; a database error by
    its SQLSTATE and place only (PostgreSQL quotes values in its messages)."""
    db = faults.db_error(exc)
    if db is not None:
        text = faults.describe_db_error(db, "quality gate")
    else:
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500] if str(exc) else type(exc).__name__
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(db_url).get("password")
    except Exception:  # noqa: BLE001
        password = None
    return text.replace(password, "***") if password else text

