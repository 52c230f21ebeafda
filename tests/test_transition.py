"""Shadow establishments: consecutive days of correct transmission and the "ready to switch" report."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from rpu import intake, store, transition
from rpu.cli import main
from rpu.config import get_region
from support.rpu_xml import rpu_file, visit

SHADOW = "990000200"
TODAY = date(2026, 11, 20)


def test_streak_counts_consecutive_days_ending_today_or_yesterday():
    d = lambda n: TODAY - timedelta(days=n)  # noqa: E731
    assert transition.streak([d(i) for i in range(7)], TODAY) == 7
    assert transition.streak([d(i) for i in range(1, 8)], TODAY) == 7       # today's file not in yet
    assert transition.streak([d(0), d(1), d(3)], TODAY) == 2                # a gap breaks it
    assert transition.streak([d(2), d(3)], TODAY) == 0
    assert transition.streak([], TODAY) == 0


def receive_on(region, db, tmp_path, etab, day: date, ok=True):
    """An accepted (or rejected) file received at 03:00 local time on `day`."""
    path = tmp_path / f"{etab}_{day}.xml"
    entry = day - timedelta(days=1)
    path.write_bytes(rpu_file([visit(ENTREE=f"{entry:%d/%m/%Y} 10:00", SORTIE=f"{entry:%d/%m/%Y} 11:00")],
                              finess=etab, debut=f"{entry:%d/%m/%Y}", fin=f"{entry:%d/%m/%Y}",
                              extract=f"{day:%d/%m/%Y} 02:00:00" if ok else ""))
    intake.ingest_path(region, db, path, sender=etab)
    at = datetime(day.year, day.month, day.day, 3, 0, tzinfo=ZoneInfo(region.timezone))
    with psycopg.connect(db) as conn:   # as if received that day
        conn.execute("UPDATE received_file SET received_at = %s WHERE file_name = %s", (at, path.name))


def test_ready_to_switch_after_seven_days_and_reported_by_the_cli(db, tmp_path, capsys):
    region = dataclasses.replace(get_region("demo"), archive_dir=tmp_path / "archive")
    for n in range(1, 7):
        receive_on(region, db, tmp_path, SHADOW, TODAY - timedelta(days=n))
    receive_on(region, db, tmp_path, SHADOW, TODAY, ok=False)            # a rejected file does not count
    with store.connection(db) as conn:
        rows = {r["finess"]: r for r in transition.establishments(conn, region, TODAY)}
    assert rows[SHADOW]["consecutive_days"] == 6 and not rows[SHADOW]["ready_to_switch"]
    receive_on(region, db, tmp_path, SHADOW, TODAY - timedelta(days=7))
    with store.connection(db) as conn:
        rows = {r["finess"]: r for r in transition.establishments(conn, region, TODAY)}
    assert rows[SHADOW]["consecutive_days"] == 7 and rows[SHADOW]["ready_to_switch"]
    assert rows["990000127"]["consecutive_days"] == 0 and not rows["990000127"]["ready_to_switch"]
    assert main(["status", "--region", "demo", "--db", db, "--date", TODAY.isoformat()]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(SHADOW))
    assert "shadow" in line and "READY TO SWITCH" in line and " 7 " in line
