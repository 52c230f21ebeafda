"""The Great Expectations adapter: an ephemeral context, the committed suites as GX suites, a validation whose
results come back as plain dicts keyed by the expectations' stable names; one SQL datasource for a whole gate;
the suites on a file without a database server (`rpu validate --quality`: a temporary SQLite file).

Great Expectations (and pandas) are imported inside functions only: GX's import alone takes seconds, and the
intake DAG's modules import this one.
"""
from __future__ import annotations

import inspect
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
    return _plain_outcome(r.expectation_config, r.success, r.result, r.exception_info)


def _plain_outcome(cfg, success, result, exception_info) -> dict:
    res = jsonable(dict(result or {}))
    exc = exception_info or {}
    if "raised_exception" not in exc and exc:   # several metrics: {metric id: {...}}
        exc = next((e for e in exc.values() if e.get("raised_exception")), {})
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    counts = {k: res.pop(k, None) for k in ("element_count", "unexpected_count", "unexpected_percent",
                                             "missing_count", "observed_value")}
    meta = cfg.meta or {}
    return {"name": meta.get("name"), "type": cfg.type, "column": cfg.kwargs.get("column"),
            "success": bool(success) and error is None, "error": error, **counts, "details": res}


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
        fmt = (dict(BASIC) if two_pass
               else {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_COUNT})
        results = [_outcome(r) for r in batch.validate(gx_suite_, result_format=fmt,
                                                        expectation_parameters=params or None).results]
    if two_pass:
        add_details(batch, suite_name, params, results)
    return _in_suite_order(suite_name, results)


def needs_details(results: list[dict]) -> set[str]:
    """The expectations of a first pass (BASIC) whose unexpected values are worth a second one: failed, with
    unexpected rows, of a type whose values say something."""
    return {o["name"] for o in results if not o["success"] and o["error"] is None
            and o["type"] not in NO_DETAILS and o["unexpected_count"]}


def add_details(batch, suite_name: str, params: dict | None, results: list[dict]) -> None:
    """The second pass: GX SUMMARY (some unexpected values) on `batch` for the failed expectations of `results`
    only, their details put in place."""
    failed = needs_details(results)
    if not failed:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = batch.validate(gx_suite(suite_name, failed), expectation_parameters=params or None,
                               result_format={"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_COUNT})
    details = {o["name"]: o["details"] for o in map(_outcome, again.results)}
    for o in results:
        o["details"] = details.get(o["name"], o["details"])


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


def frame_batches(ctx, suite: str):
    """The batch definition of in-memory DataFrames for `suite` (GX pandas engine): set up once per context and
    reused for every DataFrame (each setup saves the context's configuration: ≈ 20 ms)."""
    source = ctx.data_sources.add_or_update_pandas(f"rpu_memory_{suite}")
    return source.add_dataframe_asset(suite).add_batch_definition_whole_dataframe("all")


def pandas_run(ctx, suite: str, frame, params: dict | None = None, batches=None) -> dict:
    """One suite on a DataFrame (GX pandas engine), single pass at SUMMARY level; `batches`: the suite's
    `frame_batches` when already set up."""
    started = time.perf_counter()
    batch = (batches or frame_batches(ctx, suite)).get_batch(batch_parameters={"dataframe": frame})
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


BASIC = {"result_format": "BASIC", "partial_unexpected_count": 0}


def visit_suite_per_file(source, view: str, file_ids: list[int]) -> dict[int, list[dict]]:
    """rpu_visit over a whole run's batches at once (the view of a run: every file's visits, with FILE_ID_COLUMN),
    judged per file: {file id: its outcomes, as `validate` at BASIC level would give them on that file's batch
    alone}. Great Expectations' cost is per expectation and per validation, not per visit (≈ 0.35 s for a batch
    of any size): judged one batch at a time, an 80-file night costs 30 s of it. Here GX sets the suite up once
    on the run's view and hands, for each expectation, its metrics' definitions (the SQL condition of its
    unexpected rows, the domain its row_condition and null filters give); PostgreSQL computes every metric of
    every expectation for every file in ONE grouped query (a file is its own group); then each expectation's own
    `_validate` (GX's verdict: `mostly`, vacuous truth, percentages) runs on each file's metrics. The result is
    what GX gives on each batch alone — tests/test_quality.py compares them on batches with every kind of defect.

    Raises QualityError when the suite asks for a metric this does not compute (the caller then judges the
    batches one at a time, as GX would). Uses GX's validator internals (pinned version, see constraints)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = _RunMetrics(source, view, VISIT_SUITE, None)
        counts = run.counts()
        nothing = run.without_rows()      # a file without rows
        return {int(fid): run.outcomes(counts.get(int(fid), nothing)) for fid in file_ids}


# rpu_batch's parameters while its metrics are defined once for a whole gate: values no real parameter takes, each
# found again in the SQL GX writes (and day_min's replaced there by the column holding each file's own value)
_SENTINELS = {"day_min": -987654.125, "row_count_min": -987653.125, "row_count_max": 987652.125}


def batch_suite_per_file(source, view: str, params: dict[int, dict]) -> dict[int, list[dict]]:
    """rpu_batch over a whole gate's day counts at once (the view of a run, rpu.quality.batch.days_view_sql: every
    file's days with FILE_ID_COLUMN and its own day_min in DAY_MIN_COLUMN), judged per file with its own
    parameters ({file id: rpu.quality.batch.count_parameters}): {file id: its outcomes, as `validate` at BASIC
    level would give them on that file's day counts alone}. As visit_suite_per_file does for rpu_visit: GX sets the
    suite up once on the run's view, with stand-in parameters (_SENTINELS), and hands each expectation's metric
    definitions; the stand-in of day_min in the SQL condition of "a day below the bound" is replaced by the
    column holding each file's own bound; PostgreSQL computes every metric for every file in ONE grouped query;
    then each expectation, set up with the file's own parameters, gives GX's verdict (`_validate`) on the file's
    metrics. Raises QualityError when GX's definitions are not of a form this computes (the caller then judges
    each file alone). Judged one file at a time, GX costs ≈ 13 ms of its own Python work per file."""
    import sqlalchemy as sa
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import BindParameter

    from rpu.quality.batch import DAY_MIN_COLUMN

    day_min_column = sa.column(DAY_MIN_COLUMN)

    def own_bound(condition):
        found = []

        def replace(element):
            if isinstance(element, BindParameter) and element.value in _SENTINELS.values():
                if element.value != _SENTINELS["day_min"]:
                    raise QualityError(f"a parameter of {BATCH_SUITE} other than day_min in a row condition")
                found.append(element)
                return day_min_column
            return None

        out = visitors.replacement_traverse(condition, {}, replace)
        if len(found) > 1:
            raise QualityError(f"day_min found {len(found)} times in a condition of {BATCH_SUITE}")
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = _RunMetrics(source, view, BATCH_SUITE, dict(_SENTINELS), own_bound)
        counts = run.counts()
        out: dict[int, list[dict]] = {}
        for fid, file_params in params.items():
            values = counts.get(int(fid))
            if values is None:
                raise QualityError(f"file #{fid}: no day in the run's view")
            own = {c.meta.get("name"): c for c in run.validator.process_expectations_for_validation(
                gx_suite(BATCH_SUITE).expectation_configurations, dict(file_params))}
            mine = [own[cfg.meta.get("name")] for _, cfg, _ in run.plan]
            out[int(fid)] = run.outcomes(values, [(_Kept(c.to_domain_obj()), c) for c in mine])
        return out


class _RunMetrics:
    """A suite set up once on the view of a whole run (every file's rows, with FILE_ID_COLUMN), for
    visit_suite_per_file and batch_suite_per_file: GX's validator on that view, the definitions of every metric
    of every expectation (the SQL conditions of unexpected rows resolved in one GX graph, `condition_of` applied
    to each), turned into the aggregates of ONE query grouped by file; then GX's verdict per file. Raises
    QualityError for a metric or a domain it does not compute. Uses GX's validator internals (pinned version)."""

    def __init__(self, source, view: str, suite: str, params: dict | None, condition_of=lambda c: c):
        import sqlalchemy as sa
        from great_expectations.validator.metric_configuration import MetricConfiguration

        self.suite = suite
        self.validator = table_batch(source, view)._create_validator(result_format=dict(BASIC))._wrapped_validator
        self.engine = engine = self.validator.execution_engine
        self.whole = whole = engine.get_domain_records(domain_kwargs={"batch_id": self.validator.active_batch_id})
        runtime = self.runtime()
        configs = self.validator.process_expectations_for_validation(gx_suite(suite).expectation_configurations,
                                                                     params)

        def condition_metric(name, mc):
            return MetricConfiguration(name.removesuffix(".unexpected_count") + ".condition",
                                       mc.metric_domain_kwargs, mc.metric_value_kwargs)

        expected = []      # (expectation, config, its metrics' configurations)
        wanted = {}        # the SQL condition of every unexpected_count metric
        for cfg in configs:
            exp = cfg.to_domain_obj()
            deps = exp.get_validation_dependencies(execution_engine=engine, runtime_configuration=runtime)
            mcs = {name: deps.get_metric_configuration(name) for name in deps.get_metric_names()}
            expected.append((exp, cfg, mcs))
            wanted.update({c.id: c for c in (condition_metric(n, mc) for n, mc in mcs.items()
                                              if n.endswith(".unexpected_count"))})
        resolved, aborted = self.validator._metrics_calculator.compute_metrics(
            list(wanted.values()), runtime_configuration=None, min_graph_edges_pbar_enable=0)
        if aborted:
            raise QualityError(f"{len(aborted)} metric(s) of {suite} not resolved")
        self.plan = []     # (kept expectation, config, {metric name: column index in the query or a constant})
        self.columns = []  # the aggregates of the one query
        for exp, cfg, mcs in expected:
            metrics = {}
            for name, mc in mcs.items():
                if name.endswith(".unexpected_values"):   # BASIC asks for none of them
                    metrics[name] = []
                    continue
                if name.endswith(".unexpected_count"):
                    condition, domain_kwargs, _ = resolved[condition_metric(name, mc).id]
                else:
                    condition, domain_kwargs = None, mc.metric_domain_kwargs
                rows = _domain_filter(engine.get_domain_records(domain_kwargs=domain_kwargs), whole)
                if name == "table.row_count":
                    column = sa.func.count().filter(rows)
                elif name == "column.sum":
                    column = sa.cast(sa.func.sum(sa.column(mc.metric_domain_kwargs["column"])).filter(rows),
                                     sa.BigInteger)
                elif condition is not None:
                    # GX's SUM(CASE …) over the domain: NULL when the domain has no row
                    column = sa.case((sa.func.count().filter(rows) == 0, sa.null()),
                                     else_=sa.func.count().filter(sa.and_(rows, condition_of(condition))))
                else:
                    raise QualityError(f"{cfg.meta.get('name')}: metric {name} not computed per file")
                metrics[name] = len(self.columns)
                self.columns.append(column)
            self.plan.append((_Kept(exp), cfg, metrics))

    @classmethod
    def runtime(cls) -> dict:
        return {"result_format": dict(BASIC)}

    def counts(self) -> dict[int, tuple]:
        """{file id: the values of the query's aggregates} — the one grouped query."""
        import sqlalchemy as sa

        from rpu.quality.batch import FILE_ID_COLUMN

        file_id = sa.column(FILE_ID_COLUMN)
        query = sa.select(file_id, *self.columns).select_from(self.whole).group_by(file_id)
        return {int(row[0]): row[1:] for row in self.engine.execute_query(query).fetchall()}

    def without_rows(self) -> tuple:
        """The aggregates of a file the view has no row of (row counts 0, the rest NULL)."""
        out = [None] * len(self.columns)
        for _, _, metrics in self.plan:
            if "table.row_count" in metrics:
                out[metrics["table.row_count"]] = 0
        return tuple(out)

    def outcomes(self, values: tuple, expectations=None) -> list[dict]:
        """GX's verdict (`_validate`) on one file's values of each expectation of the plan, or of `expectations`
        ((expectation, config) in the plan's order: the same ones with the file's own parameters)."""
        results = []
        for (exp, cfg), (_, _, metrics) in zip(expectations or [(e, c) for e, c, _ in self.plan], self.plan):
            m = {name: (v if isinstance(v, list) else None if values[v] is None else int(values[v]))
                 for name, v in metrics.items()}
            r = exp._validate(metrics=m, runtime_configuration=self.runtime(), execution_engine=self.engine)
            results.append(_plain_outcome(cfg, r["success"], r.get("result"), None))
        return _in_suite_order(self.suite, results)


class _Kept:
    """An expectation whose `configuration` is computed once: GX rebuilds it from the pydantic model at each access,
    several times per `_validate` (≈ 0.4 ms each), the bulk of judging a file once its metrics are known. The
    expectation's own methods run on this object (so they see the kept configuration); its fields and everything
    else are the expectation's."""

    def __init__(self, exp):
        self._exp = exp
        self.configuration = exp.configuration

    def __getattr__(self, name):
        value = getattr(type(self._exp), name, None)
        if inspect.isfunction(value):
            return value.__get__(self)
        return getattr(self._exp, name)


def _domain_filter(domain, whole):
    """The rows of a metric's domain as a condition on the whole batch: the batch itself (no condition), or a
    SELECT on it with a WHERE (a row_condition, a null filter); anything else is not computed here."""
    import sqlalchemy as sa

    if domain is whole or str(domain) == str(whole):
        return sa.true()
    froms = domain.get_final_froms() if hasattr(domain, "get_final_froms") else []
    if len(froms) == 1 and str(froms[0]) == str(whole) and domain.whereclause is not None:
        return domain.whereclause
    raise QualityError("a metric domain other than the batch or a filter of it")


def _in_suite_order(suite_name: str, results: list[dict]) -> list[dict]:
    order = [e["meta"]["name"] for e in load(suite_name)["expectations"]]
    return sorted(results, key=lambda o: order.index(o["name"]))   # GX regroups them by column


def table_batch(source, view: str):
    """The whole view `view` as a batch of the gate's SQL datasource."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return source.add_table_asset(f"{VISIT_SUITE}_{view}", table_name=view).add_batch_definition_whole_table(
            "all").get_batch()


def visit_suite_sql(source, view: str) -> list[dict]:
    """rpu_visit on the view of one batch (a table asset of the gate's SQL datasource), through GX's SQL
    execution engine."""
    return validate(table_batch(source, view), VISIT_SUITE, None, two_pass=True)
