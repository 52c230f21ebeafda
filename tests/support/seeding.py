"""Files of an establishment loaded for real into PostgreSQL (rpu.intake.ingest_path), then dated back as if received
at a given local time: how the watch tests (tests/test_watch.py, tests/dags/test_watch_dag.py) simulate "a file
received on day X"."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from rpu import intake
from support.rpu_xml import rpu_file, visit

TZ = ZoneInfo("Europe/Paris")

# Patient data of every seeded visit: none of it may appear in a mail or a log line.
PATIENT = {"CP": "13790", "COMMUNE": "ROUSSET-LES-VIGNES", "NAISSANCE": "17/04/1961", "DP": "J189",
           "MOTIF": "GASTRO04"}
PATIENT_TRACES = ("13790", "ROUSSET", "17/04/1961", "1961-04-17", "J189", "GASTRO04")


def usual(day: date) -> int:
    """The usual visits of a day: 10, 11 or 12 — the same weekday cycles through the three from week to week."""
    return 10 + day.toordinal() % 3


class Seeder:
    """Files of an establishment, loaded for real, then dated as if received at a given local time."""

    def __init__(self, region, db_url: str, tmp_path: Path):
        self.region, self.db_url, self.dir = region, db_url, tmp_path / "seed"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def send(self, etab: str, received: date, start: date, end: date, per_day=usual, *, at: time = time(3, 0),
             dp_missing=lambda day: 0, ok: bool = True) -> dict:
        """A file of `etab` covering start…end (per_day(day) visits a day, the first dp_missing(day) of them
        without DP), received on `received` at `at` local time. ok=False: a file rejected for its EXTRACT."""
        visits = []
        d = start
        while d <= end:
            for i in range(per_day(d)):
                entry = datetime.combine(d, time(0, 0)) + timedelta(minutes=7 + i * 13)
                visits.append(visit(ENTREE=f"{entry:%d/%m/%Y %H:%M}",
                                    SORTIE=f"{entry + timedelta(hours=2):%d/%m/%Y %H:%M}",
                                    **{**PATIENT, "DP": "" if i < dp_missing(d) else PATIENT["DP"]}))
            d += timedelta(days=1)
        self.n += 1
        path = self.dir / f"RPU_{etab}_{received:%Y%m%d}_{self.n}.xml"
        path.write_bytes(rpu_file(visits, finess=etab, debut=f"{start:%d/%m/%Y}", fin=f"{end:%d/%m/%Y}",
                                  extract=f"{received:%d/%m/%Y} 02:{self.n % 60:02d}:00" if ok else ""))
        receipt = intake.ingest_path(self.region, self.db_url, path, sender=etab)
        assert receipt["status"] == ("accepted" if ok else "rejected"), receipt
        with psycopg.connect(self.db_url) as conn:
            conn.execute("UPDATE received_file SET received_at = %s WHERE id = %s",
                         (datetime.combine(received, at, tzinfo=TZ), receipt["file_id"]))
        return receipt

    def daily(self, etab: str, received: date, per_day=usual, **kw) -> dict:
        """The usual daily file: entry days J-7 … J-1 of its reception day."""
        return self.send(etab, received, received - timedelta(days=7), received - timedelta(days=1), per_day, **kw)

    def history(self, etab: str, until: date, per_day=usual, weeks: int = 10, **kw) -> dict:
        """One file of `weeks` weeks of past entry days ending the day before `until`, received on `until`."""
        return self.send(etab, until, until - timedelta(weeks=weeks), until - timedelta(days=1), per_day, **kw)

    def normal(self, etab: str, first: date, last: date, per_day=usual, **kw) -> None:
        """History received the day before `first`, then a daily file every day from `first` to `last`."""
        self.history(etab, first - timedelta(days=1), per_day, **kw)
        d = first
        while d <= last:
            self.daily(etab, d, per_day, **kw)
            d += timedelta(days=1)
