"""The Great Expectations adapter: an ephemeral context, the committed suites as GX suites, a validation whose
results come back as plain dicts keyed by the expectations' stable names; one SQL datasource for a whole gate;
the suites on a file without a database server (`rpu validate --quality`: a temporary SQLite file).

Great Expectations (and pandas) are imported inside functions only: GX's import alone takes seconds, and the
intake DAG's modules import this one.
"""
from __future__ import annotations

import logging
import math
import os
import time
import warnings
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

from rpu.checks import check_file
from rpu.quality.batch import SqliteSink, count_parameters, days_frame
from rpu.expectations import BATCH_SUITE, VISIT_SUITE, load

PARTIAL_COUNT = 20             # unexpected values kept per failed expectation (GX SUMMARY)
# GX types whose failed results carry no useful unexpected values (they are all empty)
NO_DETAILS = {"expect_column_values_to_not_be_null"}


class QualityError(RuntimeError):
    """The gate could not judge the batch (bad configuration, GX failure): recorded as the gate's own error."""



def gx_module():
    """Great Expectations, imported on first use, analytics off, quiet."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import great_expectations as gx

    return gx


def context():
    """A fresh ephemeral context: in memory only, analytics off, no progress bars, no data docs."""
    gx = gx_module()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    ctx = gx.get_context(project_config=config, mode="ephemeral")
    ctx.enable_analytics(False)
    return ctx


def gx_suite(name: str, only: set[str] | None = None):
    """The committed suite as a GX ExpectationSuite (optionally only some expectations, by name)."""
    gx = gx_module()
    doc = load(name)
    expectations = [e for e in doc["expectations"] if only is None or e["meta"]["name"] in only]
    suite = gx.ExpectationSuite(name=doc["name"], expectations=expectations, meta=dict(doc["meta"]))
    if len(suite.expectations) != len(expectations):   # GX only logs an invalid expectation: refuse instead
        raise QualityError(f"suite {name}: {len(expectations) - len(suite.expectations)} expectation(s) "
                           "GX does not accept (see include/expectations)")
    return suite


def jsonable(v):
    """GX results hold numpy numbers, NaN, Decimal, dates…: plain JSON values."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, (float, Decimal)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item"):   # numpy scalar
        return jsonable(v.item())
    return str(v)


def _outcome(r) -> dict:
    """One GX ExpectationValidationResult → a plain dict keyed by the expectation's stable name."""
    cfg = r.expectation_config
    res = jsonable(dict(r.result or {}))
    exc = r.exception_info or {}
    if "raised_exception" not in exc and exc:   # several metrics: {metric id: {...}}
        exc = next((e for e in exc.values() if e.get("raised_exception")), {})
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    counts = {k: res.pop(k, None) for k in ("element_count", "unexpected_count", "unexpected_percent",
                                             "missing_count", "observed_value")}
    meta = cfg.meta or {}
    return {"name": meta.get("name"), "type": cfg.type, "column": cfg.kwargs.get("column"),
            "success": bool(r.success) and error is None, "error": error, **counts, "details": res}


def validate(batch, suite_name: str, params: dict | None, *, two_pass: bool, only: set[str] | None = None
              ) -> list[dict]:
    """Validate `batch` with a committed suite (or `only` some of its expectations). two_pass: counts for every
    expectation first (GX BASIC without unexpected values, so no extra scan per expectation), then GX SUMMARY
    details for the failed ones only; else SUMMARY at once."""
    gx_suite_ = gx_suite(suite_name, only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # first pass at BASIC: with no unexpected values asked, GX returns exactly what SUMMARY would, and skips
        # SUMMARY's extra metrics (≈ 0.1 s of its Python work per batch of the gate)
        fmt = ({"result_format": "BASIC", "partial_unexpected_count": 0} if two_pass
               else {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_COUNT})
        results = [_outcome(r) for r in batch.validate(gx_suite_, result_format=fmt,
                                                        expectation_parameters=params or None).results]
        if two_pass:
            failed = {o["name"] for o in results if not o["success"] and o["error"] is None
                      and o["type"] not in NO_DETAILS and o["unexpected_count"]}
            if failed:
                again = batch.validate(gx_suite(suite_name, failed), expectation_parameters=params or None,
                                       result_format={"result_format": "SUMMARY",
                                                      "partial_unexpected_count": PARTIAL_COUNT})
                details = {o["name"]: o["details"] for o in map(_outcome, again.results)}
                for o in results:
                    o["details"] = details.get(o["name"], o["details"])
    order = [e["meta"]["name"] for e in load(suite_name)["expectations"]]
    return sorted(results, key=lambda o: order.index(o["name"]))   # GX regroups them by column


def suite_run(suite: str, engine: str, outcomes: list[dict] | None = None, *, params=None, started=None,
               error: str | None = None, status: str | None = None) -> dict:
    doc = load(suite)
    if status is None:
        status = "error" if error or any(o["error"] for o in outcomes or ()) else (
            "passed" if all(o["success"] for o in outcomes or ()) else "failed")
    if error is None and status == "error":
        error = "; ".join(f"{o['name']}: {o['error']}" for o in outcomes or () if o["error"])
    return {"suite": suite, "version": doc["meta"]["version"], "engine": engine, "status": status,
            "error": error, "parameters": jsonable(params or {}),
            "statistics": {"evaluated": len(outcomes or ()),
                           "successful": sum(1 for o in outcomes or () if o["success"])},
            "duration_s": round(time.perf_counter() - started, 3) if started else None,
            "results": outcomes or []}


def pandas_run(ctx, suite: str, frame, params: dict | None = None) -> dict:
    """One suite on a DataFrame (GX pandas engine), single pass at SUMMARY level."""
    started = time.perf_counter()
    source = ctx.data_sources.add_or_update_pandas("rpu_memory")
    batch = source.add_dataframe_asset(suite).add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    return suite_run(suite, "pandas", validate(batch, suite, params, two_pass=False), params=params,
                      started=started)


def validate_frames(visits, days: dict[date, int], history: list[int] | None = None) -> list[dict]:
    """Both suites on in-memory data: the visits DataFrame (BATCH_COLUMNS) and the visits per entry day.
    `history`: the recent daily counts of the establishment (default: the batch's own days)."""
    ctx = context()
    params = count_parameters(list(days.values()) if history is None else history, len(days))
    return [pandas_run(ctx, VISIT_SUITE, visits), pandas_run(ctx, BATCH_SUITE, days_frame(days), params)]


SQLITE_CHUNK = 10_000          # visits inserted at a time into the temporary SQLite file of `rpu validate --quality`


def check_file_quality(path, region=None, sender=None, *, name=None, chunk: int = SQLITE_CHUNK):
    """`rpu validate --quality`: the checks of rpu.checks, then both suites on the accepted visits.
    Returns (FileReport, suite runs or None when the file is rejected).

    Bounded memory: the visits' batch columns stream, `chunk` rows at a time, into a table of a temporary SQLite
    file (no database server here; sqlite3 is in the standard library), on which GX's SQL execution engine runs
    rpu_visit as the gate does on PostgreSQL; the day counts (rpu_batch) are a few rows, a DataFrame."""
    import sqlite3
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="rpu-validate-") as tmp:
        file = Path(tmp) / "batch.sqlite"
        db = sqlite3.connect(file)
        try:
            sink = SqliteSink(db, chunk)
            report = check_file(path, region, sender, sink, name=name)
            sink.flush()
        finally:
            db.close()
        if not report.accepted:
            return report, None
        days = dict.fromkeys(_days(report.period_start, report.period_end), 0) if report.period_start else {}
        days.update(report.per_day)
        days = dict(sorted(days.items()))
        ctx = context()
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = ctx.data_sources.add_sqlite("rpu_validate", connection_string=f"sqlite:///{file}")
        try:
            visit_run = suite_run(VISIT_SUITE, "sql", visit_suite_sql(source, "batch"), started=started)
        finally:
            for engine in (getattr(source, "_engine", None), source.get_execution_engine().engine):
                if engine is not None:
                    engine.dispose()
        params = count_parameters(list(days.values()), len(days))
        return report, [visit_run, pandas_run(ctx, BATCH_SUITE, days_frame(days), params)]


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@contextmanager
def sql_source(ctx, db_url: str):
    """One GX SQL datasource on the regional database for a whole gate (every batch it judges goes through it and
    its connection pool); its engine is disposed at the end."""
    import functools

    import psycopg

    with warnings.catch_warnings():
        # GX advises its PostgresDatasource, which wants a URL with the password in it: the generic datasource
        # takes a connection factory on the libpq URL or conninfo as is, with the project's driver (psycopg 3,
        # SQLAlchemy's `postgresql+psycopg`). JIT off: each of GX's queries is short, compiling it would cost more
        # than it saves.
        warnings.simplefilter("ignore")
        source = ctx.data_sources.add_sql("rpu_region", connection_string="postgresql+psycopg://", kwargs={
            "creator": functools.partial(psycopg.connect, db_url, options="-c jit=off -c search_path=rpu_quality")})
    try:
        yield source
    finally:
        for engine in (getattr(source, "_engine", None), source.get_execution_engine().engine):  # close now
            if engine is not None:
                engine.dispose()


def visit_suite_sql(source, view: str) -> list[dict]:
    """rpu_visit on the view of one batch (a table asset of the gate's SQL datasource), through GX's SQL
    execution engine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = source.add_table_asset(f"{VISIT_SUITE}_{view}", table_name=view).add_batch_definition_whole_table(
            "all").get_batch()
        return validate(batch, VISIT_SUITE, None, two_pass=True)
