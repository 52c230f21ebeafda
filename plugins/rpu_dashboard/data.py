"""What the dashboard pages show, read through the rpu package (reports, watch, sends, transition) from the
region's database (its Airflow connection), cut down to what the user's scope allows *before* it reaches a
template: rows of establishments outside the scope never leave this module."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from rpu import store
from rpu.config import ConfigError, Region, load_region, region_files

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

    @property
    def current_month(self) -> str:
        return f"{self.today:%Y-%m}"


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
