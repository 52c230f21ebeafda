"""The quality gate of the intake: once per intake run (`gate_pending`, the `gate` task of the intake DAG after its
mapped loads; `rpu ingest FILE...` after all its files), over every accepted batch still waiting for its gate — this
run's and those of an earlier run that stopped between a load and its gate. Great Expectations is imported once,
with one context and one SQL datasource for the whole gate. rpu_visit judges every file at once, on one view of all
the run's batches (`rpu_quality.run_<backend pid>`), each file getting GX's verdict on its own metrics
(rpu.quality.gx.visit_suite_per_file); a file with failures gets GX's second pass on its own view
(`rpu_quality.batch_<file id>`) for their unexpected values; rpu_batch runs on each file's day counts. Results are
stored per file in a transaction of the file's own; a failed blocking expectation quarantines that file only.

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
from rpu.quality.batch import batch_view_sql, count_parameters, days_view_sql, view_name
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


def _drop_leftover_views(conn) -> None:
    from psycopg import sql

    for (name,) in conn.execute(store.query("quality_leftover_views")).fetchall():
        conn.execute(sql.SQL("DROP VIEW IF EXISTS rpu_quality.{}").format(sql.Identifier(name)))


@contextmanager
def _batch_view(conn, file_id: int):
    """The view GX reads for one file (rpu_quality.batch_<file id>), committed for its connections, dropped
    afterwards."""
    _drop_leftover_views(conn)
    conn.execute(batch_view_sql("quality_batch_view", [file_id]))
    try:
        yield f"batch_{int(file_id)}"
    finally:
        conn.execute(batch_view_sql("quality_batch_drop", [file_id]))


@contextmanager
def _days_view(conn, day_min: dict[int, float], *, alone: bool = False):
    """The view of the day counts GX reads for rpu_batch: a whole gate's (rpu_quality.runday_<backend pid>, each
    file's days with its id and its own day_min) or, `alone`, one file's (rpu_quality.day_<file id>); committed
    for GX's connections, dropped afterwards (a crashed gate's: by the next one)."""
    _drop_leftover_views(conn)
    run = None if alone else f"runday_{int(conn.info.backend_pid)}"
    conn.execute(days_view_sql("quality_days_view", day_min, run))
    name = view_name(run, "day", list(day_min))
    try:
        yield name
    finally:
        conn.execute(batch_view_sql("quality_batch_drop", [], name))


@contextmanager
def _run_view(conn, file_ids: list[int]):
    """The view of a whole gate's batches (rpu_quality.run_<backend pid>: the visits of every file judged, with
    the file's id), committed for GX's connections, dropped afterwards (a crashed gate's: by the next one)."""
    _drop_leftover_views(conn)
    view = f"run_{int(conn.info.backend_pid)}"
    conn.execute(batch_view_sql("quality_batch_view", file_ids, view))
    try:
        yield view
    finally:
        conn.execute(batch_view_sql("quality_batch_drop", [], view))


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


def preload() -> None:
    """Import what a gate runs on (Great Expectations, SQLAlchemy) ahead of it (rpu.gate_ahead.GateAhead)."""
    gx.gx_module()
    import sqlalchemy  # noqa: F401
    from great_expectations.data_context.types.base import DataContextConfig  # noqa: F401


def gate_pending(conn, region, db_url: str, *, only=None, on_judged=None) -> list[dict]:
    """Run the gate over every batch waiting for it (or, `only`, those of these file ids): GX set up once, the
    visits of all of them judged in one pass per file (`_judge`), each file's results stored in a transaction of
    its own; returns one {file_id, status, quarantined} per file judged, in order (also handed to `on_judged` as
    soon as that file's results are stored: the intake writes its receipt again). A failure of GX, of a query of
    the gate or of the configuration is recorded as the gate's error of the files it concerns (status `error`,
    with the reason), not raised; only a failure to store results (the database gone) propagates — the next gate
    finds the files still pending and judges them."""
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
            runs = _judge(conn, region, db_url, files, session)
        finally:
            session.close()
        for f in files:
            out.append(_store(conn, region, f, runs[f["id"]]))
            if on_judged is not None:
                on_judged(out[-1])
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
            _store(conn, region, f, _judge(conn, region, db_url, [f], session)[f["id"]])
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


def _judge(conn, region, db_url: str, files: list[dict], session: _Session) -> dict[int, list[dict]]:
    """The suite runs of each file ({file id: runs}), the establishments' locks held by the caller: rpu_visit on
    the view of all the files' batches at once, judged per file (gx.visit_suite_per_file); rpu_batch on the view
    of all their day counts at once, each file with its own parameters from its establishment's history
    (gx.batch_suite_per_file); a second GX pass, on the file's own view, for the unexpected values of its failed
    expectations only. A gate failure is each file's error; if a run's view cannot be judged at once, each file
    is judged alone (as GX would) and the log says so."""
    started = time.perf_counter()
    runs: dict[int, list[dict]] = {f["id"]: [] for f in files}
    visits: dict[int, list[dict]] = {}
    todo: list[dict] = []
    try:
        problems = blocking_problems(sorted(set(region.quality.blocking)))
        if problems:
            raise QualityError("; ".join(problems))
        days: dict[int, dict] = {f["id"]: {} for f in files}
        for file_id, day, n in conn.execute(store.query("quality_days"), {"file_ids": list(days)}):
            days[file_id][day] = int(n)
        for f in files:
            if not days[f["id"]] or sum(days[f["id"]].values()) == 0:
                runs[f["id"]] = [gx.suite_run(s, "sql", status="skipped", error="lot vide : aucun passage enregistré",
                                              started=started) for s in SUITES]
            else:
                todo.append(f)
        if todo and store.fetch_one(conn, "quality_analyze_needed",
                                    {"rows": sum(sum(days[f["id"]].values()) for f in todo)})["needed"]:
            conn.execute(store.query("quality_analyze"))
    except Exception as exc:   # the configuration, or the gate's first queries: every file's error
        message = _failed(exc, db_url, "the run")
        return {f["id"]: _error_runs([], message, started) for f in files}
    params: dict[int, dict] = {}
    if todo:
        weeks = timedelta(weeks=region.watch.history_weeks)
        history: dict[int, list[int]] = {f["id"]: [] for f in todo}
        try:
            for file_id, _day, n in conn.execute(store.query("quality_history"), dict(
                    file_ids=[f["id"] for f in todo], etabs=[f["etab"] for f in todo],
                    ordres=[f["ordre"] for f in todo], sinces=[min(days[f["id"]]) - weeks for f in todo],
                    untils=[min(days[f["id"]]) for f in todo])):
                history[file_id].append(int(n))
        except Exception as exc:   # the gate's history query: every file's error
            message = _failed(exc, db_url, "the run")
            return {f["id"]: runs[f["id"]] or _error_runs([], message, started) for f in files}
        params = {f["id"]: count_parameters(history[f["id"]], len(days[f["id"]])) for f in todo}
    day_counts: dict[int, list[dict]] = {}
    if todo:
        try:
            with _run_view(conn, [f["id"] for f in todo]) as view:
                visits = gx.visit_suite_per_file(session.sql_source(), view, [f["id"] for f in todo])
        except Exception as exc:   # noqa: BLE001 - judged one batch at a time instead, each with its own outcome
            log.warning("quality gate: the %d batch(es) of the run not judged at once (%s): one at a time",
                        len(todo), _safe_message(exc, db_url))
            visits = {}
        try:
            with _days_view(conn, {fid: p["day_min"] for fid, p in params.items()}) as view:
                day_counts = gx.batch_suite_per_file(session.sql_source(), view, params)
        except Exception as exc:   # noqa: BLE001 - as above, for the day counts
            log.warning("quality gate: the day counts of the %d batch(es) not judged at once (%s): one at a time",
                        len(todo), _safe_message(exc, db_url))
            day_counts = {}
    for f in todo:
        file_id, file_started = f["id"], time.perf_counter()
        try:
            outcomes = visits.get(file_id)
            if outcomes is None or gx.needs_details(outcomes):   # GX on this file's batch alone
                with _batch_view(conn, file_id) as view:
                    if outcomes is None:
                        outcomes = gx.visit_suite_sql(session.sql_source(), view)
                    else:
                        gx.add_details(gx.table_batch(session.sql_source(), view), VISIT_SUITE, None, outcomes)
            runs[file_id].append(gx.suite_run(VISIT_SUITE, "sql", outcomes, started=file_started))
            file_params, outcomes = params[file_id], day_counts.get(file_id)
            if outcomes is None or gx.needs_details(outcomes):   # GX on this file's day counts alone
                with _days_view(conn, {file_id: file_params["day_min"]}, alone=True) as view:
                    batch = gx.table_batch(session.sql_source(), view)
                    if outcomes is None:
                        outcomes = gx.validate(batch, BATCH_SUITE, file_params, two_pass=True)
                    else:
                        gx.add_details(batch, BATCH_SUITE, file_params, outcomes)
            runs[file_id].append(gx.suite_run(BATCH_SUITE, "sql", outcomes, params=file_params,
                                              started=file_started))
        except Exception as exc:   # the gate's own failure is a result, not a crash of the intake
            runs[file_id] = _error_runs(runs[file_id], _failed(exc, db_url, f"file #{file_id}"), file_started)
    return runs


def _failed(exc: BaseException, db_url: str, what: str) -> str:
    message = _safe_message(exc, db_url)
    if faults.db_error(exc) is not None:   # its text may quote a visit's value: SQLSTATE and place only
        log.error("quality gate of %s failed: %s", what, message)
    else:
        log.exception("quality gate of %s failed", what)
    return message


def _error_runs(runs: list[dict], message: str, started: float) -> list[dict]:
    done = {r["suite"] for r in runs}
    return runs + [gx.suite_run(s, "sql", error=message, status="error",
                                started=started) for s in SUITES if s not in done]


def _store(conn, region, f: dict, runs: list[dict]) -> dict:
    """Store one file's suite runs (and its quarantine when a blocking expectation failed or the gate could not
    judge it), in one transaction; its gate is then done."""
    file_id = f["id"]
    blocking = set(region.quality.blocking)
    held = sorted({o["name"] for r in runs for o in r["results"] if not o["success"] and o["name"] in blocking})
    if blocking and any(r["status"] == "error" for r in runs):
        held.append("GATE_ERROR")
    with conn.transaction():
        for r in runs:
            run_id = conn.execute(store.query("quality_run_insert"), dict(
                file_id=file_id, suite=r["suite"], version=r["version"], status=r["status"], engine=r["engine"],
                error=r["error"], parameters=_json(r["parameters"]), statistics=_json(r["statistics"]),
                duration_s=r["duration_s"])).fetchone()[0]
            with conn.cursor() as cur:
                cur.executemany(store.query("quality_result_insert"), [dict(
                    run_id=run_id, expectation=o["name"], type=o["type"], column_name=o["column"],
                    success=o["success"], blocking=o["name"] in blocking, element_count=o["element_count"],
                    unexpected_count=o["unexpected_count"], unexpected_percent=o["unexpected_percent"],
                    missing_count=o["missing_count"], observed_value=_json(o["observed_value"]),
                    details=_json(o["details"]), error=o["error"]) for o in r["results"]])
        if held:
            conn.execute(store.query("quality_quarantine_insert"), {"file_id": file_id, "expectations": held})
        conn.execute(store.query("quality_gate_done"), {"file_id": file_id})
    log.info("quality gate of file #%s: %s%s", file_id,
             ", ".join(f"{r['suite']} {r['status']}" for r in runs), f", quarantined ({', '.join(held)})"
             if held else "")
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

