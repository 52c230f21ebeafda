"""What the dashboard pages show, read through the rpu package (reports, watch, sends, transition) from the
region's database (its Airflow connection), cut down to what the user's scope allows *before* it reaches a
template: rows of establishments outside the scope never leave this module."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from rpu import daily, store
from rpu.config import ConfigError, Region, load_region, region_files
from rpu.connections import db_url as conn_url
from rpu.national import reconciliation
from rpu.national import report as national_report
from rpu.national import settings as national_settings

log = logging.getLogger(__name__)

LEDGER_LIMIT = 50


def regions() -> tuple[list[Region], list[str]]:
    """Every valid region file (an invalid one is skipped and named, it must not hide the others)."""
    found, broken = [], []
    for path in region_files():
        try:
            found.append(load_region(path))
        except (ConfigError, OSError) as exc:
            log.error("dashboard: skipping %s: %s", path, exc)
            broken.append(path.name)
    return found, broken


def region_by_code(code: str) -> Region | None:
    return next((r for r in regions()[0] if r.code == code), None)


def today_in(region: Region) -> date:
    return datetime.now(region.tz).date()


@dataclass
class Page:
    """One region (or one establishment of it) as the user may see it."""
    region: Region
    year: int
    today: date
    full: bool                                # the whole region (total row, region-wide sends) or not
    finesses: list[str]                       # establishments shown, in the region file's order
    error: str | None = None                  # the regional database could not be reached
    errors: dict[str, str] = field(default_factory=dict)   # section → why it could not be read
    transmissions: dict | None = None
    status: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    alerts_available: bool = True
    quality: dict | None = None
    ledger: list[dict] = field(default_factory=list)
    daily: dict[str, list[dict]] = field(default_factory=dict)   # finess → rpu.daily.series points
    reconciliation: dict | None = None        # rpu.national.reconciliation, cut to the scope; or {"unavailable"}

    @property
    def current_month(self) -> str:
        return f"{self.today:%Y-%m}"

    @property
    def chart_end(self) -> date:
        """The last day of the daily charts: today, or 31 December of a past year."""
        return min(self.today, date(self.year, 12, 31))


def _keep_rows(report: dict, finesses: set[str], full: bool) -> dict:
    """A report of rpu.reports with only the rows the user may see (the total only for the full region)."""
    if full:
        return report
    kept = {"rows": [r for r in report["rows"] if not r["total"] and r["finess"] in finesses]}
    if "gates" in report:   # the quality report's gate results are per establishment too
        kept["gates"] = [g for g in report["gates"] if g["finess"] in finesses]
    return report | kept


def load(region: Region, *, finesses: list[str], full: bool, year: int, today: date | None = None,
         db_url: str | None = None) -> Page:
    """Everything a region or establishment page shows; `finesses`: what the user may see of the region.
    Each section is read on its own: one that fails is named in `page.errors`, the others are still shown."""
    from rpu import reports

    today = today or today_in(region)
    page = Page(region=region, year=year, today=today, full=full, finesses=list(finesses))
    wanted = set(finesses)
    q_start = date(year, 1, 1)
    q_end = max(q_start, min(date(year, 12, 31), today))

    def section(name: str, read):
        try:
            return read()
        except Exception as exc:
            log.exception("dashboard: region %s: cannot read %s", region.code, name)
            page.errors[name] = type(exc).__name__
            return None

    try:
        if db_url is None:
            from rpu.connections import db_url as conn_url

            db_url = conn_url(region.db_conn_id)
        conn = store.connect(db_url)
    except Exception as exc:
        log.exception("dashboard: cannot connect to the database of region %s", region.code)
        page.error = type(exc).__name__
        return page
    with conn:
        page.transmissions = section("transmissions", lambda: _keep_rows(
            reports.transmissions(conn, region, year), wanted, full))
        page.quality = section("quality", lambda: _keep_rows(reports.quality(conn, region, q_start, q_end),
                                                             wanted, full))
        page.status = section("status", lambda: _status(conn, region, today, wanted)) or []
        page.alerts, page.alerts_available = section("alerts", lambda: _alerts(conn, region, wanted, full)) \
            or ([], True)
        page.ledger = section("ledger", lambda: _ledger(db_url, finesses, full)) or []
        page.daily = section("daily", lambda: daily.series(conn, region, list(finesses), page.chart_end)) or {}
        page.reconciliation = section("reconciliation", lambda: _reconciliation(conn, region, year, wanted, full))
    return page


def _status(conn, region: Region, today: date, wanted: set[str]) -> list[dict]:
    from rpu import transition

    last = {r["etab"].strip(): r for r in _rows(conn.execute(store.query("dashboard_last_files")))}
    return [s | {"last_file": last.get(s["finess"])}
            for s in transition.establishments(conn, region, today) if s["finess"] in wanted]


def _ledger(db_url: str, finesses: list[str], full: bool) -> list[dict]:
    """The send ledger (rpu.sends), newest first: everything for the full region, else the rows of the visible
    establishments only (a region-wide file, such as the ARS export, holds every establishment)."""
    from rpu import sends

    if full:
        return sends.ledger(db_url, limit=LEDGER_LIMIT)
    rows = [r for f in finesses for r in sends.ledger(db_url, etab=f, limit=LEDGER_LIMIT)]
    return sorted(rows, key=lambda r: (r["prepared_at"], r["id"]), reverse=True)[:LEDGER_LIMIT]


def _rows(cur) -> list[dict]:
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _alerts(conn, region: Region, wanted: set[str], full: bool) -> tuple[list[dict], bool]:
    """Open alerts of the watch (rpu.watch) of the visible establishments; those of a FINESS outside the region
    file only for the full region. (…, False) when the watch's table is not there yet (migration 003)."""
    import psycopg
    from rpu.watch import alerts

    known = {e.finess for e in region.establishments}
    try:
        alerts = alerts.open_alerts(conn, region)
    except psycopg.errors.UndefinedTable:
        return [], False
    return [a for a in alerts if (a["etab"] or "").strip() in wanted
            or (full and (a["etab"] or "").strip() not in known)], True


# --- the ATIH side (rpu.national): reconciliation, the national page and its drill-down -------------------------

def national_db_url(national) -> str | None:
    """The national database's URL (connection `rpu_national_db`), None when the connection is not defined
    here (an installation without the ATIH side)."""
    try:
        return conn_url(national.db_conn_id)
    except Exception as exc:    # noqa: BLE001 - Airflow's "connection not defined" has no stable type
        log.info("dashboard: no national database (%s): %s", national.db_conn_id, type(exc).__name__)
        return None


def cut_reconciliation(result: dict, finesses: set[str], full: bool) -> dict:
    """A reconciliation with only the sends of the visible establishments (all for the full region)."""
    if full:
        return result
    rows = [r for r in result["rows"] if r["finess"] in finesses]
    return result | {"rows": rows, "months": reconciliation.months_of(rows)}


def _reconciliation(conn, region: Region, year: int, wanted: set[str], full: bool) -> dict:
    national = national_settings.load()
    url = national_db_url(national)
    if url is None:
        return {"unavailable": national.db_conn_id}
    with store.connect(url) as nconn:
        return cut_reconciliation(reconciliation.reconcile(conn, nconn, national, region, year), wanted, full)


@dataclass
class NationalPage:
    """The national page (or a region's drill-down) as the user may see it."""
    year: int
    today: date
    conn_id: str
    full_regions: list[Region] = field(default_factory=list)      # regions seen in full: the grid
    error: str | None = None                  # the national database is not configured ("unavailable") or down
    errors: dict[str, str] = field(default_factory=dict)          # region code → why its part could not be read
    grid: dict | None = None                  # rpu.national.report.grid, cut to the full regions
    reconciliation: dict[str, dict] = field(default_factory=dict)  # region code → months cells
    lines: list[dict] = field(default_factory=list)               # establishments: ATIH next to the regional base


def cut_grid(grid: dict, codes: list[str]) -> dict:
    """The grid with the rows of these regions only and its "Total général" over them."""
    rows = [r for r in grid["rows"] if r["region"] in codes]
    total = [t | {k: sum(r[k] for r in rows if r["month"] == t["month"]) for k in ("files", "establishments", "rpu")}
             for t in grid["total"]]
    return grid | {"regions": [r for r in grid["regions"] if r["region"] in codes], "rows": rows, "total": total}


def _regional_base(region: Region, year: int, finesses: set[str] | None) -> dict[str, dict[int, int]]:
    """What the regional base holds: per establishment and month, the RPU entered from 1 January to the month's
    end (rpu.reports.transmissions, the figure a cumulative file of that month carries)."""
    from rpu import reports

    with store.connect(conn_url(region.db_conn_id)) as conn:
        rows = reports.transmissions(conn, region, year)["rows"]
    return {r["finess"]: {int(c["month"][5:]): c["rpus"] for c in r["cells"]}
            for r in rows if not r["total"] and (finesses is None or r["finess"] in finesses)}


def establishment_lines(nconn, region: Region, year: int, finesses: set[str] | None, errors: dict) -> list[dict]:
    """Per establishment of the region (only `finesses`, None: all): the RPU of the files ATIH received per
    FINESS_ordre and month (rpu.national.report.establishments) next to what the regional base holds."""
    drill = national_report.establishments(nconn, year, region, finesses)
    try:
        base = _regional_base(region, year, finesses)
    except Exception as exc:
        log.exception("dashboard: region %s: cannot read the regional base", region.code)
        errors[region.code] = type(exc).__name__
        base = {}
    lines: dict[str, dict] = {}
    for row in drill["rows"]:
        line = lines.setdefault(row["finess"], {"region": region, "finess": row["finess"], "name": row["name"],
                                                "atih": [], "base": base.get(row["finess"])})
        if row["ordre"] is not None:
            line["atih"].append(row)
    return list(lines.values())


def load_national(scope, year: int, today: date, *, only: Region | None = None) -> NationalPage:
    """The national page of `scope`: the grid of the regions it sees in full, the reconciliation cells of every
    region it sees (a reader's: its establishments' sends only), and the establishment lines of the regions it
    sees in part. `only`: one region's drill-down (its establishment lines, no grid)."""
    national = national_settings.load()
    page = NationalPage(year=year, today=today, conn_id=national.db_conn_id)
    every = [r for r in (regions()[0] if only is None else [only]) if scope.sees_region(r)]
    page.full_regions = [r for r in every if scope.full_region(r)]
    url = national_db_url(national)
    if url is None:
        page.error = "unavailable"
        return page
    try:
        nconn = store.connect(url)
    except Exception as exc:
        log.exception("dashboard: cannot connect to the national database")
        page.error = type(exc).__name__
        return page
    with nconn:
        if page.full_regions and only is None:
            grid = national_report.grid(nconn, year, regions()[0])
            page.grid = grid if scope.everything else cut_grid(grid, [r.code for r in page.full_regions])
        for region in every:
            full = scope.full_region(region)
            shown = {e.finess for e in scope.establishments_of(region)}
            try:
                with store.connect(conn_url(region.db_conn_id)) as rconn:
                    page.reconciliation[region.code] = cut_reconciliation(
                        reconciliation.reconcile(rconn, nconn, national, region, year), shown, full)
            except Exception as exc:
                log.exception("dashboard: region %s: cannot reconcile", region.code)
                page.errors[region.code] = type(exc).__name__
            if only is not None or not full:
                page.lines += establishment_lines(nconn, region, year, None if full else shown, page.errors)
    return page
