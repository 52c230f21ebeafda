"""The regional database on a real PostgreSQL: migrations, cancel-and-replace by day, duplicates, crashes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date

import psycopg
import pytest

from rpu import intake, loader, store
from support.rpu_xml import rpu_file, visit

ETAB = "990000127"


def q(db, sql, *params):
    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def day_visits(day: int, n: int, dp: str = "R074") -> list[dict]:
    """n visits entering on day `day` of November 2026."""
    return [visit(ENTREE=f"{day:02d}/11/2026 {8 + i % 12:02d}:{i % 60:02d}", SORTIE=f"{day:02d}/11/2026 21:00", DP=dp)
            for i in range(n)]


def ingest(region, db, tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return intake.ingest_path(region, db, path, sender=ETAB)


def per_day(db):
    return dict(q(db, "SELECT extract(day from entry_date)::int, count(*) FROM visit GROUP BY 1 ORDER BY 1"))


def test_migrations_are_versioned_and_rerunnable(fresh_db, tmp_path, monkeypatch):
    names = [path.name for _, _, path in store.migrations()]
    assert names[0] == "001_intake.sql"
    assert store.migrate(fresh_db) == names
    assert store.migrate(fresh_db) == []
    assert q(fresh_db, "SELECT version, name FROM schema_migration ORDER BY version")[0] == (1, "intake")
    # an applied migration edited afterwards is refused
    edited = tmp_path / "migrations"
    edited.mkdir()
    (edited / "001_intake.sql").write_text("-- changed\n" + (store.MIGRATIONS_DIR / "001_intake.sql").read_text())
    monkeypatch.setattr(store, "MIGRATIONS_DIR", edited)
    with pytest.raises(store.MigrationError, match="changed after being applied"):
        store.migrate(fresh_db)


def test_a_file_replaces_its_period_and_only_its_period(db, region, tmp_path):
    ingest(region, db, tmp_path, "a.xml", rpu_file(day_visits(1, 3) + day_visits(2, 4), debut="01/11/2026",
                                                      fin="02/11/2026", extract="03/11/2026 03:00:00"))
    assert per_day(db) == {1: 3, 2: 4}
    # next day's file covers days 2-3: day 1 untouched, day 2 replaced, day 3 added
    r = ingest(region, db, tmp_path, "b.xml", rpu_file(day_visits(2, 5) + day_visits(3, 6), debut="02/11/2026",
                                                          fin="03/11/2026", extract="04/11/2026 03:00:00"))
    assert r["status"] == "accepted" and r["days_applied"] == ["2026-11-02", "2026-11-03"]
    assert per_day(db) == {1: 3, 2: 5, 3: 6}
    # a day of the period with no visit in the file is emptied (the file says: none that day)
    ingest(region, db, tmp_path, "c.xml", rpu_file(day_visits(3, 2), debut="02/11/2026", fin="03/11/2026",
                                                     extract="05/11/2026 03:00:00"))
    assert per_day(db) == {1: 3, 3: 2}


def test_an_older_extraction_never_overwrites_newer_data(db, region, tmp_path):
    newer = rpu_file(day_visits(4, 7, dp="J069") + day_visits(5, 2, dp="J069"), debut="04/11/2026",
                     fin="05/11/2026", extract="06/11/2026 03:00:00")
    older = rpu_file(day_visits(3, 1, dp="S934") + day_visits(4, 9, dp="S934"), debut="03/11/2026",
                     fin="04/11/2026", extract="05/11/2026 03:00:00")
    ingest(region, db, tmp_path, "newer.xml", newer)
    r = ingest(region, db, tmp_path, "older.xml", older)   # arrives late
    assert r["status"] == "accepted"
    assert r["days_applied"] == ["2026-11-03"] and r["days_kept_newer"] == ["2026-11-04"]
    assert per_day(db) == {3: 1, 4: 7, 5: 2}
    assert q(db, "SELECT DISTINCT dp FROM visit WHERE entry_date = '2026-11-04'") == [("J069",)]
    assert q(db, "SELECT day, extract FROM day_source ORDER BY day")[1][1].day == 6


def test_overlapping_periods_in_either_order_give_the_same_result(fresh_db, pg_server, region, tmp_path):
    a = rpu_file(day_visits(1, 2) + day_visits(2, 2) + day_visits(3, 2), debut="01/11/2026", fin="03/11/2026",
                 extract="04/11/2026 03:00:00")
    b = rpu_file(day_visits(2, 5) + day_visits(3, 5) + day_visits(4, 5), debut="02/11/2026", fin="04/11/2026",
                 extract="05/11/2026 03:00:00")
    results = []
    for order in ((a, b), (b, a)):
        name = f"t_{len(results)}_{fresh_db[-6:]}"
        url = pg_server.create_database(name)
        store.migrate(url)
        for i, data in enumerate(order):
            ingest(region, url, tmp_path, f"{len(results)}_{i}.xml", data)
        results.append(per_day(url))
        pg_server.drop_database(name)
    assert results[0] == results[1] == {1: 2, 2: 5, 3: 5, 4: 5}


def test_same_file_twice_is_recorded_as_duplicate_and_changes_nothing(db, region, tmp_path):
    data = rpu_file(day_visits(1, 3), debut="01/11/2026", fin="01/11/2026")
    first = ingest(region, db, tmp_path, "a.xml", data)
    ids = q(db, "SELECT id FROM visit ORDER BY id")
    again = ingest(region, db, tmp_path, "a_again.xml", data)
    assert again["status"] == "duplicate" and again["duplicate_of"] == first["file_id"]
    assert q(db, "SELECT id FROM visit ORDER BY id") == ids
    assert q(db, "SELECT status FROM received_file ORDER BY id") == [("accepted",), ("duplicate",)]


def test_rejected_file_is_recorded_with_reasons_and_stores_no_visit(db, region, tmp_path):
    r = ingest(region, db, tmp_path, "bad.xml", rpu_file(day_visits(1, 3), extract=""))
    assert r["status"] == "rejected"
    assert [e["rule"] for e in r["errors"]] == ["EXTRACT_MISSING"]
    assert q(db, "SELECT count(*) FROM visit") == [(0,)]
    assert q(db, "SELECT status, errors->0->>'rule' FROM received_file") == [("rejected", "EXTRACT_MISSING")]


def test_rejected_visits_are_kept_with_their_reason(db, region, tmp_path):
    data = rpu_file(day_visits(1, 2) + [visit(ENTREE="31/02/2026 10:00"), visit(ENTREE="")],
                    debut="01/11/2026", fin="01/11/2026")
    r = ingest(region, db, tmp_path, "a.xml", data)
    assert (r["visits_loaded"], r["visits_rejected"]) == (2, 2)
    rows = q(db, "SELECT idx, rule, raw->>'ENTREE' FROM rejected_visit ORDER BY idx")
    assert rows == [(3, "ENTREE_INVALID", "31/02/2026 10:00"), (4, "ENTREE_MISSING", "")]


def test_typed_columns_and_raw_extras_are_stored(db, region, tmp_path):
    v = visit(ENTREE="01/11/2026 10:12:30", NAISSANCE="15/08/1931", SEXE="X", LISTE_DA=["I10", "E119"],
              COMMUNE="SAINT\tJEAN \\ L'ÎLE\nD'YEU", MOTIF='dit "chute"')
    data = rpu_file([v], debut="01/11/2026", fin="01/11/2026").replace(
        b"</PATIENT>", b"<HMED>Dr X</HMED><ENTREE_UHCD><D>1</D></ENTREE_UHCD></PATIENT>")
    ingest(region, db, tmp_path, "a.xml", data)
    row = q(db, "SELECT entree, naissance, da, actes, extra, flags, etab, ordre, commune, motif FROM visit")[0]
    assert row[8:] == ("SAINT\tJEAN \\ L'ÎLE\nD'YEU", 'dit "chute"')
    row = row[:8]
    assert str(row[0]) == "2026-11-01 10:12:30" and row[1] == date(1931, 8, 15)
    assert row[2] == ["I10", "E119"] and row[3] == ["DEQP003"]
    assert row[4] == {"HMED": "Dr X", "ENTREE_UHCD": "<ENTREE_UHCD><D>1</D></ENTREE_UHCD>"}
    assert row[5] == ["SEXE_DOMAIN"] and row[6:] == (ETAB, 0)


CRASHER = textwrap.dedent("""
    import os, signal, sys, dataclasses
    from pathlib import Path
    from rpu import store, intake
    from rpu.config import get_region
    point, db, path, archive = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    if point == "copy":
        # die in the middle of the COPY, after some rows went to the server
        original = store.CopySink.visit
        count = {"n": 0}
        def visit(self, row):
            count["n"] += 1
            if count["n"] == 1500:
                self.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            original(self, row)
        store.CopySink.visit = visit
    else:
        # die after the replacement rule updated day_source, before the visits moved (mid-transaction)
        original = store.statements
        def statements(name):
            if name == "apply_stage":
                os.kill(os.getpid(), signal.SIGKILL)
            return original(name)
        store.statements = statements
    region = dataclasses.replace(get_region("demo"), archive_dir=archive)
    intake.ingest_path(region, db, path, sender="990000127")
""")


@pytest.mark.parametrize("point", ["copy", "replace"])
def test_a_crash_mid_load_leaves_previous_data_and_a_rerun_completes(db, region, tmp_path, point):
    ingest(region, db, tmp_path, "before.xml", rpu_file(day_visits(1, 4) + day_visits(2, 4), debut="01/11/2026",
                                                          fin="02/11/2026", extract="03/11/2026 03:00:00"))
    snapshot = (per_day(db), q(db, "SELECT * FROM day_source ORDER BY day"), q(db, "SELECT id FROM received_file"))
    big = tmp_path / "big.xml"
    big.write_bytes(rpu_file(day_visits(2, 2000) + day_visits(3, 2000), debut="02/11/2026", fin="03/11/2026",
                             extract="04/11/2026 03:00:00"))
    script = tmp_path / "crash.py"
    script.write_text(CRASHER)
    proc = subprocess.run([sys.executable, str(script), point, db, str(big), str(tmp_path / "archive")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert (per_day(db), q(db, "SELECT * FROM day_source ORDER BY day"), q(db, "SELECT id FROM received_file")) \
        == snapshot
    r = intake.ingest_path(region, db, big, sender=ETAB)
    assert r["status"] == "accepted"
    assert per_day(db) == {1: 4, 2: 2000, 3: 2000}
    # the raw file was archived before the load began, and is archived once
    assert len(list((tmp_path / "archive").rglob("big.xml*"))) == 1


def test_load_refuses_to_run_inside_a_callers_transaction(db, region, tmp_path):
    path = tmp_path / "a.xml"
    path.write_bytes(rpu_file(day_visits(1, 1)))
    with psycopg.connect(db) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(RuntimeError, match="outside any transaction"):
            loader.load_file(conn, path, region=region, sender=ETAB, name="a.xml", sha256="0" * 64, size=1)


def test_copy_text_rendering_escapes_what_copy_needs():
    assert store._text("a\tb\\c\nd") == "a\\tb\\\\c\\nd"
    assert store._text("") == "\\N"
    assert store._array(['x"y', "a\\b"]) == '{"x\\\\"y","a\\\\\\\\b"}'


def test_array_values_with_quotes_and_backslashes_round_trip(db, region, tmp_path):
    ingest(region, db, tmp_path, "a.xml", rpu_file([visit(LISTE_DA=['R0"7', "I\\10", "a,b", "{x}"])]))
    assert q(db, "SELECT da FROM visit") == [(['R0"7', "I\\10", "a,b", "{x}"],)]
