"""Data quality with Great Expectations (GX 1.x): versioned suites, the quality gate of the intake, its stored
results, quarantine and release.

Suites. `include/expectations/rpu_visit.json` (one row per stored visit: value domains, CIM-10/CCAM/postal-code
formats, age, duration, coherence of entry and exit blocks, completeness ≥ 80 % per item) and
`include/expectations/rpu_batch.json` (one row per entry day of the batch: day counts against the
establishment's recent days) are *generated* from rpu_format and rpu.problems by `python -m rpu.quality --write`
and committed; tests/test_quality.py proves the committed files are the generated ones and that the suites, the
XSD and the per-visit rules (rpu.checks) agree. Every expectation carries in `meta` a stable `name` (the
per-visit rule's name when there is one: `SEXE_DOMAIN`, `DP_FORMAT`…, else `COMPLETENESS_DP`, `DAY_COUNT_LOW`…)
and a French `description` of the failure, used in receipts and by the watch. A suite's version is a hash of its
expectations: it changes whenever a rule does.

Gate (`run_gate`, called by rpu.intake after an accepted load, in its own transaction). The batch — the visits
stored from the file — is the query `quality_batch.sql`, exposed to GX as a view `rpu_quality.batch_<file id>`
for the time of the gate; GX's SQL execution engine pushes the expectations down to PostgreSQL (docs/quality.md
has the measures behind that choice). A first pass gets every expectation's counts, a second one GX's SUMMARY
details (unexpected values) for the failed ones only. The day counts (rpu_batch) are a few rows, validated as a
pandas DataFrame. Results go to `quality_run` / `quality_result`; a failed expectation the region lists under
`quality: blocking:` quarantines the file (`quality_quarantine`): its visits stay stored but every export leaves
them out until `rpu release`. FEDORU: a quality problem is never a rejection. A crash of GX is recorded as the
gate's own failure (status `error`); the load stays.

`rpu validate --quality FILE` runs the same suites on the file in memory (GX pandas engine, a DataFrame built
from the checked rows with exactly the columns of quality_batch.sql: `batch_values`).

Great Expectations (and pandas) are imported inside functions only: GX's import alone takes seconds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from rpu import faults, rpu_format as F
from rpu.problems import QUALITY, RULES

log = logging.getLogger(__name__)

SUITES_DIR = Path(__file__).resolve().parents[1] / "expectations"
VISIT_SUITE = "rpu_visit"
BATCH_SUITE = "rpu_batch"
SUITES = (VISIT_SUITE, BATCH_SUITE)

COMPLETENESS_MIN = 0.80        # FEDORU: every item filled on at least 80 % of the visits
# Items measured for completeness: every simple item but ENTREE (always filled: a visit without it is rejected);
# LISTE_DA / LISTE_ACTES are optional lists, not measured.
COMPLETENESS_ITEMS = tuple(i for i in F.SIMPLE_ITEMS if i != "ENTREE")
# Hospitalised visits: the exit modes whose ORIENT is a hospital orientation (MODE_SORTIE 6/7).
HOSPITALISED = tuple(m for m, o in F.ORIENT_BY_MODE_SORTIE.items() if o == F.ORIENT_HOSPITAL)
# DP completeness leaves out patients gone without being seen or against advice (ORIENT FUGUE/PSA/SCAM/REO).
DP_NOT_EXPECTED = F.ORIENT_HOME
# The coherence rules: (rule, mode item, item, allowed values per mode). A batch column `<mode>_<item>` holds
# "<mode>/<value>" when both are filled; the expectation looks at the visits whose mode has a table (an unknown
# mode is its domain rule's business), so the mode part is one of the table's keys and "/" is unambiguous.
COHERENCE = (
    ("PROVENANCE_INCOHERENT", "MODE_ENTREE", "PROVENANCE", F.PROVENANCE_BY_MODE_ENTREE),
    ("DESTINATION_INCOHERENT", "MODE_SORTIE", "DESTINATION", F.DESTINATION_BY_MODE_SORTIE),
    ("ORIENT_INCOHERENT", "MODE_SORTIE", "ORIENT", F.ORIENT_BY_MODE_SORTIE),
)
PAIR_SEP = "/"
# DA / ACTE codes of a visit are joined into one value with chr(1) (it cannot occur in XML text).
LIST_SEP = "\x01"
LIST_SEP_RE = r"\x01"

# The columns of a batch (quality_batch.sql; `batch_values` for a file in memory), in order.
BATCH_COLUMNS = (
    "cp", "commune", "naissance", "naissance_invalid", "age", "sexe", "mode_entree", "provenance",
    "mode_entree_provenance", "transport", "transport_pec", "motif", "gravite", "dp", "da", "actes", "sortie",
    "sortie_invalid", "duree_min", "mode_sortie", "destination", "mode_sortie_destination", "orient",
    "mode_sortie_orient",
)
NUMERIC_COLUMNS = ("age", "duree_min")
DAY_COLUMNS = ("day", "visits")

HISTORY_MIN_DAYS = 7           # fewer known days before the batch: the day-count expectations get no bound
COUNT_SIGMAS = 3               # FEDORU: a day below μ − 3σ of the recent days is abnormal …
DROP_SIGMAS = 2                # … μ and σ computed after dropping the days below μ − 2σ
PARTIAL_COUNT = 20             # unexpected values kept per failed expectation (GX SUMMARY)
PASSAGES, JOURS = "passage(s)", "jour(s)"
# GX types whose failed results carry no useful unexpected values (they are all empty)
NO_DETAILS = {"expect_column_values_to_not_be_null"}


class QualityError(RuntimeError):
    """The gate could not judge the batch (bad configuration, GX failure): recorded as the gate's own error."""


class NotQuarantined(LookupError):
    pass


# --- the suites, generated from rpu_format ------------------------------------------------------------------

def _exp(name: str, type_: str, description: str, unit: str = PASSAGES, **kwargs) -> dict:
    """One expectation as GX 1.x serialises it, with its stable name and French words in `meta`."""
    return {"type": type_, "kwargs": kwargs, "meta": {"name": name, "description": description, "unit": unit}}


def _in(column: str, values) -> dict:
    """A GX row condition `column IN values`."""
    return {"type": "comparison", "column": {"name": column}, "operator": "IN", "parameter": list(values)}


def _null_or_not_in(column: str, values) -> dict:
    return {"type": "or", "conditions": [
        {"type": "nullity", "column": {"name": column}, "is_null": True},
        {"type": "comparison", "column": {"name": column}, "operator": "NOT_IN", "parameter": list(values)}]}


def full_regex(element: str) -> str:
    """A value that is one code of the format (rpu_format's regexes are used with fullmatch)."""
    return f"^(?:{element})$"


def list_violation_regex(element: str) -> str:
    """Matches a LIST_SEP-joined list of codes as soon as ONE code is not of the format: at the start of some
    code, the code's regex does not reach the next separator or the end. (A code regex can only cross a
    separator through `.*`, which the lookahead makes harmless.)"""
    return f"(?:^|{LIST_SEP_RE})(?!(?:{element})(?:{LIST_SEP_RE}|$))"


def pair_column(mode: str, item: str) -> str:
    return f"{mode.lower()}_{item.lower()}"


def _words(rule: str) -> str:
    level, words = RULES[rule]
    assert level == QUALITY, rule
    return words


def _pct_words(fraction: float) -> str:
    return f"{fraction:.0%}".replace("%", " %")


def visit_expectations() -> list[dict]:
    """rpu_visit: every per-visit quality rule of rpu.checks (same name, same words) and completeness."""
    out = [_exp(f"{item}_DOMAIN", "expect_column_values_to_be_in_set",
                f"{_words(f'{item}_DOMAIN')} ({', '.join(values)})", column=item.lower(), value_set=list(values))
           for item, values in F.DOMAINS.items()]
    out += [
        _exp("CP_FORMAT", "expect_column_values_to_match_regex", _words("CP_FORMAT"),
             column="cp", regex=full_regex(F.CP_RE)),
        _exp("DP_FORMAT", "expect_column_values_to_match_regex", _words("DP_FORMAT"),
             column="dp", regex=full_regex(F.CIM10_RE)),
        _exp("DA_FORMAT", "expect_column_values_to_not_match_regex", _words("DA_FORMAT"),
             column="da", regex=list_violation_regex(F.CIM10_RE)),
        _exp("ACTE_FORMAT", "expect_column_values_to_not_match_regex", _words("ACTE_FORMAT"),
             column="actes", regex=list_violation_regex(F.CCAM_RE)),
        _exp("NAISSANCE_INVALID", "expect_column_values_to_be_null", _words("NAISSANCE_INVALID"),
             column="naissance_invalid"),
        _exp("AGE_RANGE", "expect_column_values_to_be_between", _words("AGE_RANGE"),
             column="age", min_value=0, max_value=F.MAX_AGE_YEARS),
        _exp("SORTIE_INVALID", "expect_column_values_to_be_null", _words("SORTIE_INVALID"),
             column="sortie_invalid"),
        _exp("DURATION_NEGATIVE", "expect_column_values_to_be_between", _words("DURATION_NEGATIVE"),
             column="duree_min", min_value=0, strict_min=True),
        _exp("DURATION_TOO_LONG", "expect_column_values_to_be_between", _words("DURATION_TOO_LONG"),
             column="duree_min", max_value=F.MAX_DURATION_HOURS * 60),
    ]
    for rule, mode, item, table in COHERENCE:
        # a row condition costs GX two queries of its own; a regex covering unknown modes costs more (measured)
        out.append(_exp(rule, "expect_column_values_to_be_in_set", _words(rule),
                        column=pair_column(mode, item),
                        value_set=[f"{m}{PAIR_SEP}{v}" for m, values in table.items() for v in values if v],
                        row_condition=_in(mode.lower(), table)))
    for item in COMPLETENESS_ITEMS:
        kwargs: dict = {"column": item.lower(), "mostly": COMPLETENESS_MIN}
        scope = "des passages"
        if item in ("DESTINATION", "ORIENT"):
            kwargs["row_condition"] = _in("mode_sortie", HOSPITALISED)
            scope = f"des passages hospitalisés (MODE_SORTIE {'/'.join(HOSPITALISED)})"
        elif item == "DP":
            kwargs["row_condition"] = _null_or_not_in("orient", DP_NOT_EXPECTED)
            scope = f"des passages (hors ORIENT {'/'.join(DP_NOT_EXPECTED)})"
        out.append(_exp(f"COMPLETENESS_{item}", "expect_column_values_to_not_be_null",
                        f"{item} renseigné sur moins de {_pct_words(COMPLETENESS_MIN)} {scope}", **kwargs))
    return out


def batch_expectations() -> list[dict]:
    """rpu_batch: one row per entry day of the batch (`day`, `visits`), against the establishment's recent days;
    the bounds are suite parameters computed at run time (`count_parameters`)."""
    return [
        _exp("DAY_COUNT_LOW", "expect_column_values_to_be_between",
             f"jour dont le nombre de passages est anormalement bas (sous μ − {COUNT_SIGMAS}σ des jours récents "
             "de l'établissement)", unit=JOURS, column="visits", min_value={"$PARAMETER": "day_min"}),
        _exp("ROW_COUNT", "expect_column_sum_to_be_between",
             f"nombre de passages du lot incohérent avec les jours récents de l'établissement (hors de "
             f"n·μ ± {COUNT_SIGMAS}σ·√n pour n jours)", unit="", column="visits",
             min_value={"$PARAMETER": "row_count_min"}, max_value={"$PARAMETER": "row_count_max"}),
    ]


SUITE_DOCS = {
    VISIT_SUITE: "RPU visits of one batch (the visits stored from one received file): value domains, formats, "
                 "age, duration, coherence of entry and exit blocks (the per-visit rules of rpu.checks, same "
                 "names) and completeness per item (FEDORU, mostly 0.8).",
    BATCH_SUITE: "Entry days of one batch: visits per day against the establishment's recent days (FEDORU: "
                 "abnormal below μ − 3σ, μ and σ computed after dropping the days below μ − 2σ).",
}
BUILDERS = {VISIT_SUITE: visit_expectations, BATCH_SUITE: batch_expectations}


def suite_version(expectations: list[dict]) -> str:
    """The version of a suite: a hash of its expectations (any change to a rule changes it)."""
    canonical = json.dumps(expectations, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def build(name: str) -> dict:
    """The suite `name` as a GX 1.x suite document (what `ExpectationSuite(**doc)` takes)."""
    expectations = BUILDERS[name]()
    return {"name": name, "expectations": expectations,
            "meta": {"version": suite_version(expectations), "description": SUITE_DOCS[name],
                     "generated_by": "python -m rpu.quality --write (from include/rpu/rpu_format.py)"},
            "notes": None}


def render(name: str) -> str:
    """The JSON text committed as include/expectations/<name>.json."""
    return json.dumps(build(name), ensure_ascii=False, indent=1) + "\n"


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.json"


def write() -> list[Path]:
    SUITES_DIR.mkdir(parents=True, exist_ok=True)
    for name in SUITES:
        suite_path(name).write_text(render(name), encoding="utf-8")
    return [suite_path(name) for name in SUITES]


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """The committed suite document (what the gate runs)."""
    return json.loads(suite_path(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict]:
    """Stable name → {suite, type, description, unit} of every expectation of the committed suites."""
    return {e["meta"]["name"]: {"suite": suite, "type": e["type"], "description": e["meta"]["description"],
                                "unit": e["meta"]["unit"]}
            for suite in SUITES for e in load(suite)["expectations"]}


def check_blocking(names) -> None:
    """The region's `quality: blocking:` names must be expectations of the suites."""
    unknown = sorted(set(names) - set(catalogue()))
    if unknown:
        raise QualityError(f"quality.blocking names unknown expectation(s) {', '.join(unknown)} "
                           f"(known: {', '.join(catalogue())})")


# --- the batch ----------------------------------------------------------------------------------------------

def batch_values(row: tuple) -> tuple:
    """The batch columns (BATCH_COLUMNS) of one checked visit row (rpu.checks.check_visit): in Python what
    quality_batch.sql computes in PostgreSQL from the stored visit."""
    (_idx, _line, day, cp, commune, naissance, sexe, entree, mode_e, prov, transport, transport_pec, motif, gravite,
     dp, da, actes, sortie, mode_s, dest, orient, _extra, raw_invalid, _flags) = row
    n_raw, s_raw = raw_invalid.get("NAISSANCE"), raw_invalid.get("SORTIE")
    age = None if naissance is None else (-1 if naissance > day else F.age_years(naissance, day))
    return (
        cp or None, commune or None, naissance.isoformat() if naissance else n_raw, n_raw, age, sexe or None,
        mode_e or None, prov or None, f"{mode_e}{PAIR_SEP}{prov}" if mode_e and prov else None,
        transport or None, transport_pec or None, motif or None, gravite or None,
        F.normalise_code(dp) if dp else None,
        F.normalise_code(LIST_SEP.join(da)) if da else None,
        LIST_SEP.join(actes) if actes else None,
        sortie.isoformat(sep=" ") if sortie else s_raw, s_raw,
        (sortie - entree).total_seconds() / 60 if sortie else None,
        mode_s or None, dest or None, f"{mode_s}{PAIR_SEP}{dest}" if mode_s and dest else None,
        orient or None, f"{mode_s}{PAIR_SEP}{orient}" if mode_s and orient else None,
    )


class FrameSink:
    """rpu.checks.VisitSink keeping the batch columns of every accepted visit (for `rpu validate --quality`)."""

    def __init__(self):
        self.rows: list[tuple] = []

    def visit(self, row: tuple) -> None:
        self.rows.append(batch_values(row))

    def rejected(self, raw, problem) -> None:
        pass

    def frame(self):
        import pandas as pd

        df = pd.DataFrame.from_records(self.rows, columns=list(BATCH_COLUMNS))
        for c in NUMERIC_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        return df


def batch_view_sql(name: str, file_id: int) -> str:
    """quality_batch_view.sql / quality_batch_drop.sql for one file (a view has no parameters: the id, an
    integer, is written into the text)."""
    from rpu import store

    return store.query(name).replace("{file_id}", str(int(file_id)))


def fedoru_baseline(history: list[int]) -> tuple[float, float] | None:
    """(μ, σ) of an establishment's recent daily counts, after dropping the days below μ − 2σ (FEDORU);
    None with fewer than HISTORY_MIN_DAYS days."""
    if len(history) < HISTORY_MIN_DAYS:
        return None
    mu, sigma = statistics.fmean(history), statistics.pstdev(history)
    kept = [n for n in history if n >= mu - DROP_SIGMAS * sigma]
    return statistics.fmean(kept), statistics.pstdev(kept)


def count_parameters(history: list[int], n_days: int) -> dict:
    """The rpu_batch suite parameters for a batch of `n_days` entry days, from the recent daily counts."""
    base = fedoru_baseline(history)
    if base is None or n_days == 0:
        return {"day_min": 0, "row_count_min": 0, "row_count_max": None, "history_days": len(history)}
    mu, sigma = base
    spread = COUNT_SIGMAS * sigma * math.sqrt(n_days)
    return {"day_min": round(max(0.0, mu - COUNT_SIGMAS * sigma), 2),
            "row_count_min": round(max(0.0, n_days * mu - spread), 2),
            "row_count_max": round(n_days * mu + spread, 2),
            "history_days": len(history), "mu": round(mu, 2), "sigma": round(sigma, 2)}


def days_frame(per_day: dict[date, int]):
    import pandas as pd

    return pd.DataFrame({"day": list(per_day), "visits": [int(n) for n in per_day.values()]},
                        columns=list(DAY_COLUMNS))


# --- running Great Expectations -----------------------------------------------------------------------------

def _gx():
    """Great Expectations, imported on first use, analytics off, quiet."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import great_expectations as gx

    return gx


def _context():
    """A fresh ephemeral context: in memory only, analytics off, no progress bars, no data docs."""
    gx = _gx()
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
    gx = _gx()
    doc = load(name)
    expectations = [e for e in doc["expectations"] if only is None or e["meta"]["name"] in only]
    suite = gx.ExpectationSuite(name=doc["name"], expectations=expectations, meta=dict(doc["meta"]))
    if len(suite.expectations) != len(expectations):   # GX only logs an invalid expectation: refuse instead
        raise QualityError(f"suite {name}: {len(expectations) - len(suite.expectations)} expectation(s) "
                           "GX does not accept (see include/expectations)")
    return suite


def _jsonable(v):
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
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):   # numpy scalar
        return _jsonable(v.item())
    return str(v)


def _outcome(r) -> dict:
    """One GX ExpectationValidationResult → a plain dict keyed by the expectation's stable name."""
    cfg = r.expectation_config
    res = _jsonable(dict(r.result or {}))
    exc = r.exception_info or {}
    if "raised_exception" not in exc and exc:   # several metrics: {metric id: {...}}
        exc = next((e for e in exc.values() if e.get("raised_exception")), {})
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    counts = {k: res.pop(k, None) for k in ("element_count", "unexpected_count", "unexpected_percent",
                                             "missing_count", "observed_value")}
    meta = cfg.meta or {}
    return {"name": meta.get("name"), "type": cfg.type, "column": cfg.kwargs.get("column"),
            "success": bool(r.success) and error is None, "error": error, **counts, "details": res}


def _validate(batch, suite_name: str, params: dict | None, *, two_pass: bool, only: set[str] | None = None
              ) -> list[dict]:
    """Validate `batch` with a committed suite (or `only` some of its expectations). two_pass: counts for every
    expectation first (no unexpected values, so no extra scan per expectation), then GX SUMMARY details for the
    failed ones only; else SUMMARY at once."""
    gx_suite_ = gx_suite(suite_name, only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmt = ({"result_format": "SUMMARY", "partial_unexpected_count": 0} if two_pass
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


def _suite_run(suite: str, engine: str, outcomes: list[dict] | None = None, *, params=None, started=None,
               error: str | None = None, status: str | None = None) -> dict:
    doc = load(suite)
    if status is None:
        status = "error" if error or any(o["error"] for o in outcomes or ()) else (
            "passed" if all(o["success"] for o in outcomes or ()) else "failed")
    if error is None and status == "error":
        error = "; ".join(f"{o['name']}: {o['error']}" for o in outcomes or () if o["error"])
    return {"suite": suite, "version": doc["meta"]["version"], "engine": engine, "status": status,
            "error": error, "parameters": _jsonable(params or {}),
            "statistics": {"evaluated": len(outcomes or ()),
                           "successful": sum(1 for o in outcomes or () if o["success"])},
            "duration_s": round(time.perf_counter() - started, 3) if started else None,
            "results": outcomes or []}


def _pandas_run(ctx, suite: str, frame, params: dict | None = None) -> dict:
    """One suite on a DataFrame (GX pandas engine), single pass at SUMMARY level."""
    started = time.perf_counter()
    source = ctx.data_sources.add_or_update_pandas("rpu_memory")
    batch = source.add_dataframe_asset(suite).add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    return _suite_run(suite, "pandas", _validate(batch, suite, params, two_pass=False), params=params,
                      started=started)


def validate_frames(visits, days: dict[date, int], history: list[int] | None = None) -> list[dict]:
    """Both suites on in-memory data: the visits DataFrame (BATCH_COLUMNS) and the visits per entry day.
    `history`: the recent daily counts of the establishment (default: the batch's own days)."""
    ctx = _context()
    params = count_parameters(list(days.values()) if history is None else history, len(days))
    return [_pandas_run(ctx, VISIT_SUITE, visits), _pandas_run(ctx, BATCH_SUITE, days_frame(days), params)]


def check_file_quality(path, region=None, sender=None, *, name=None):
    """`rpu validate --quality`: the checks of rpu.checks, then both suites on the accepted visits in memory.
    Returns (FileReport, suite runs or None when the file is rejected)."""
    from rpu.checks import check_file

    sink = FrameSink()
    report = check_file(path, region, sender, sink, name=name)
    if not report.accepted:
        return report, None
    days = dict.fromkeys(_days(report.period_start, report.period_end), 0) if report.period_start else {}
    days.update(report.per_day)
    return report, validate_frames(sink.frame(), dict(sorted(days.items())))


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _visit_suite_sql(ctx, db_url: str, view: str) -> list[dict]:
    """rpu_visit on the view of the batch, through GX's SQL execution engine."""
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
            batch = source.add_table_asset(VISIT_SUITE, table_name=view).add_batch_definition_whole_table(
                "all").get_batch()
            return _validate(batch, VISIT_SUITE, None, two_pass=True)
        finally:
            for engine in (getattr(source, "_engine", None), source.get_execution_engine().engine):  # close now
                if engine is not None:
                    engine.dispose()


# --- the gate -----------------------------------------------------------------------------------------------

def _row(conn, name: str, params: dict) -> dict | None:
    from rpu import store

    cur = conn.execute(store.query(name), params)
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row)) if row else None


def gate_needed(conn, file_id: int) -> bool:
    """An accepted file whose gate has not run yet (a first load, or a rerun after a crash before the gate)."""
    row = _row(conn, "quality_gate_needed", {"file_id": file_id})
    return bool(row and row["needed"])


@contextmanager
def _establishment_lock(conn, etab: str):
    """The establishment's load lock (the key store.load_file takes) for the time of the gate: no load of the
    same establishment changes the batch's visits between GX's queries."""
    from rpu import store

    conn.execute(store.query("quality_lock"), {"etab": etab})
    try:
        yield
    finally:
        conn.execute(store.query("quality_unlock"), {"etab": etab})


@contextmanager
def _batch_view(conn, file_id: int):
    """The view GX reads (rpu_quality.batch_<file id>), committed for its connections, dropped afterwards."""
    from psycopg import sql

    from rpu import store

    for (name,) in conn.execute(store.query("quality_leftover_views")).fetchall():
        conn.execute(sql.SQL("DROP VIEW IF EXISTS rpu_quality.{}").format(sql.Identifier(name)))
    conn.execute(batch_view_sql("quality_batch_view", file_id))
    try:
        yield f"batch_{int(file_id)}"
    finally:
        conn.execute(batch_view_sql("quality_batch_drop", file_id))


def run_gate(conn, region, db_url: str, file_id: int) -> dict:
    """Validate the batch of an accepted, loaded file, store the results, quarantine it when a blocking
    expectation fails; returns `file_quality(conn, file_id)`. A failure of GX, of a query of the gate or of the
    configuration is recorded as the gate's own error (status `error`, with the reason), not raised: the load
    stays committed and the receipt goes. (Only a failure to store the results propagates: the task's retry finds
    the file without results and runs its gate again.) With blocking expectations configured, a batch the gate
    could not judge is quarantined too."""
    from rpu import store

    f = _row(conn, "quality_file", {"file_id": file_id})
    if f is None or f["status"] != "accepted":
        raise ValueError(f"file #{file_id} is not an accepted file")
    blocking = set(region.quality_blocking)
    runs: list[dict] = []
    started = time.perf_counter()
    try:
        check_blocking(blocking)
        with _establishment_lock(conn, f["etab"]):
            days = {r[0]: int(r[1]) for r in conn.execute(store.query("quality_days"), {"file_id": file_id})}
            if not days or sum(days.values()) == 0:
                runs = [_suite_run(s, "sql", status="skipped", error="lot vide : aucun passage enregistré",
                                   started=started) for s in SUITES]
            else:
                if _row(conn, "quality_analyze_needed", {"rows": sum(days.values())})["needed"]:
                    conn.execute(store.query("quality_analyze"))
                since = min(days) - timedelta(weeks=region.watch_history_weeks)
                history = [int(r[1]) for r in conn.execute(store.query("quality_history"), dict(
                    etab=f["etab"], ordre=f["ordre"], since=since, until=min(days)))]
                ctx = _context()
                with _batch_view(conn, file_id) as view:
                    runs.append(_suite_run(VISIT_SUITE, "sql", _visit_suite_sql(ctx, db_url, view),
                                           started=started))
                runs.append(_pandas_run(ctx, BATCH_SUITE, days_frame(days), count_parameters(history, len(days))))
    except Exception as exc:   # the gate's own failure is a result, not a crash of the intake
        message = _safe_message(exc, db_url)
        if faults.db_error(exc) is not None:   # its text may quote a visit's value: SQLSTATE and place only
            log.error("quality gate of file #%s failed: %s", file_id, message)
        else:
            log.exception("quality gate of file #%s failed", file_id)
        done = {r["suite"] for r in runs}
        runs += [_suite_run(s, "sql" if s == VISIT_SUITE else "pandas", error=message, status="error",
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
    return file_quality(conn, file_id, region.tz)


def _json(v):
    from psycopg.types.json import Jsonb

    return Jsonb(_jsonable(v))


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


# --- reading the results ------------------------------------------------------------------------------------

def _failure(row: dict) -> dict:
    info = catalogue().get(row["expectation"], {})
    return {"name": row["expectation"], "suite": row["suite"],
            "description": info.get("description", row["expectation"]), "unit": info.get("unit", ""),
            "blocking": row["blocking"], "unexpected_count": row["unexpected_count"],
            "unexpected_percent": row["unexpected_percent"], "observed_value": row["observed_value"],
            "error": row["error"]}


def file_quality(conn, file_id: int, tz=None) -> dict | None:
    """The latest gate of a file, as its receipt shows it (times in `tz`, e.g. the region's); None when the gate
    never ran for it.

        {"status": "passed" | "failed" | "error" | "skipped", "suites": [{"suite", "version", "status"}],
         "failed": [{"name", "description", "unit", "blocking", "unexpected_count", "unexpected_percent",
                     "observed_value", "error"}],
         "error": None | "…", "quarantined": bool, "quarantine": None | {"expectations", "since", "released_at",
                                                                         "released_by"}}
    """
    from rpu import store

    cur = conn.execute(store.query("quality_file_results"), {"file_id": file_id})
    cols = [c.name for c in cur.description]
    rows = [dict(zip(cols, r)) for r in cur]
    if not rows:
        return None
    suites = {}
    for r in rows:
        suites.setdefault(r["suite"], {"suite": r["suite"], "version": r["suite_version"], "status": r["status"],
                                       "error": r["run_error"], "run_at": r["run_at"]})
    statuses = {s["status"] for s in suites.values()}
    status = next(s for s in ("error", "failed", "skipped", "passed") if s in statuses)
    q = _row(conn, "quality_quarantine_by_file", {"file_id": file_id})

    def when(t: datetime | None) -> str | None:
        return t.astimezone(tz).isoformat(timespec="seconds") if t else None

    return {
        "status": status,
        "run_at": when(max(s["run_at"] for s in suites.values())),
        "suites": [{k: s[k] for k in ("suite", "version", "status")} for s in suites.values()],
        "failed": [_failure(r) for r in rows if r["expectation"] is not None and not r["success"]],
        "error": "; ".join(s["error"] for s in suites.values() if s["status"] == "error" and s["error"]) or None,
        "quarantined": bool(q and q["released_at"] is None),
        "quarantine": None if q is None else {
            "expectations": list(q["expectations"]), "since": when(q["quarantined_at"]),
            "released_at": when(q["released_at"]), "released_by": q["released_by"]},
    }


def failed_since(conn, since: datetime) -> list[dict]:
    """For the watch: every file whose quality gate ran since `since` and did not pass, oldest first.

        [{"file_id", "file", "etab", "sender", "received_at", "run_at", "status": "failed" | "error",
          "quarantined": bool, "error": None | "…",
          "failed": [{"name", "description", "blocking", "unexpected_count", "unexpected_percent", …}]}]
    """
    from rpu import store

    cur = conn.execute(store.query("quality_failed_since"), {"since": since})
    cols = [c.name for c in cur.description]
    out: dict[int, dict] = {}
    for r in (dict(zip(cols, x)) for x in cur):
        f = out.setdefault(r["file_id"], {
            "file_id": r["file_id"], "file": r["file_name"], "etab": r["etab"], "sender": r["sender"],
            "received_at": r["received_at"], "run_at": r["run_at"], "status": "failed",
            "quarantined": r["quarantined"], "error": None, "failed": []})
        if r["status"] == "error":
            f["status"] = "error"
            f["error"] = "; ".join(x for x in (f["error"], r["run_error"]) if x)
        if r["expectation"] is not None:
            f["failed"].append(_failure(r))
    return list(out.values())


def stored_results(conn, start: date, end: date, etab: str | None = None) -> list[dict]:
    """Every stored expectation result of the gates run on files received in [start, end] (local dates of the
    database session), for reports and dashboards: one dict per file, suite and expectation."""
    from rpu import store

    cur = conn.execute(store.query("quality_results"), {"start": start, "end": end, "etab": etab})
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur]


# --- release ------------------------------------------------------------------------------------------------

def release(conn, file_id: int, by: str) -> dict:
    """Release a quarantined file: its visits are forwarded again by the next exports. Idempotent: releasing a
    released file changes nothing (`already` True). Raises NotQuarantined for a file never quarantined."""
    with conn.transaction():
        row = _row(conn, "quality_release", {"file_id": file_id, "by": by})
        already = row is None
        if already:
            row = _row(conn, "quality_quarantine_by_file", {"file_id": file_id})
            if row is None:
                raise NotQuarantined(f"file #{file_id} is not in quarantine")
    return {"file_id": file_id, "file": row["file_name"], "etab": row["etab"],
            "expectations": list(row["expectations"]), "released_at": row["released_at"],
            "released_by": row["released_by"], "already": already}


def _cmd_release(args) -> int:
    import getpass

    from rpu import store
    from rpu.config import get_region

    get_region(args.region)   # a known region (its file names the database's owner)
    by = args.by or os.environ.get("SUDO_USER") or getpass.getuser()
    with store.connection(args.db) as conn:
        try:
            r = release(conn, args.file_id, by)
        except NotQuarantined as exc:
            print(f"rpu release: {exc}", file=sys.stderr)
            return 1
    when = r["released_at"].isoformat(sep=" ", timespec="seconds")
    if r["already"]:
        print(f"file #{r['file_id']} {r['file']} ({r['etab']}): already released on {when} by {r['released_by']}")
    else:
        print(f"file #{r['file_id']} {r['file']} ({r['etab']}): released on {when} by {r['released_by']} "
              f"(was held for {', '.join(r['expectations'])}); its visits go out with the next exports")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `rpu release` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "release", help="release a batch the quality gate quarantined (its visits are forwarded again)",
        description="Release a file whose batch the quality gate quarantined (a blocking expectation failed): "
                    "its stored visits are included again in the InVS, ATIH and ARS exports. Records who and "
                    "when; releasing a released file changes nothing. Exit 0, 1 when the file is not in "
                    "quarantine.")
    p.add_argument("--region", required=True)
    p.add_argument("--db", required=True, metavar="URL")
    p.add_argument("--file-id", required=True, type=int, metavar="N", help="received file id (see its receipt)")
    p.add_argument("--by", help="who releases it (default: the operating-system user)")
    p.set_defaults(func=_cmd_release)


if __name__ == "__main__":  # python -m rpu.quality --write  rewrites the committed suites
    parser = argparse.ArgumentParser(prog="python -m rpu.quality")
    parser.add_argument("--write", action="store_true", help="rewrite include/expectations/*.json")
    if parser.parse_args().write:
        for p in write():
            print(p)
