"""The postal code → PMSI geographic code table (rpu.geo) on a real PostgreSQL: which table is in use, when the
region's file is loaded again, the coverage check before an ATIH send, and loads serialised by a lock."""
from __future__ import annotations

import threading
from datetime import date

import psycopg
import pytest

from rpu import geo, intake, store
from support.rpu_xml import rpu_file, visit

ETAB = "990000127"


def _table(path, rows: dict[str, str]):
    path.write_text("cp;code_geo\n" + "".join(f"{cp};{code}\n" for cp, code in rows.items()), encoding="utf-8")
    return path


def _in_use(db) -> dict[str, str]:
    return dict(psycopg.connect(db).execute("SELECT rtrim(cp), rtrim(code_geo) FROM pmsi_geo").fetchall())


def test_the_region_file_is_loaded_again_only_when_it_changes_and_a_hand_load_stays(db, tmp_path):
    """A table loaded by hand is the one used until another load; the file the region names is loaded the first
    time, then only when its content changed — never because another table is in use."""
    region_file = _table(tmp_path / "region.csv", {"58110": "58G01"})
    with store.connection(db) as conn:
        assert geo.ensure_loaded(conn, region_file) is True
        assert geo.ensure_loaded(conn, region_file) is False           # unchanged: not reloaded
        assert _in_use(db) == {"58110": "58G01"}
        assert geo.load(conn, _table(tmp_path / "atih_2026.csv", {"58110": "58Z01", "75011": "75011"})) == 2
        assert geo.ensure_loaded(conn, region_file) is False           # the hand load stays in use
        assert _in_use(db) == {"58110": "58Z01", "75011": "75011"}
        assert geo.state(conn)["origin"] == "manual"
        _table(region_file, {"58110": "58G02"})                        # the region's file changes: it wins again
        assert geo.ensure_loaded(conn, region_file) is True
        assert _in_use(db) == {"58110": "58G02"}
        assert geo.ensure_loaded(conn, None) is False                  # no file named: nothing loaded


def test_an_atih_send_is_refused_without_a_table_or_with_one_that_does_not_match(db, region, tmp_path):
    path = tmp_path / "visits.xml"
    cps = ["58110"] * 18 + ["75011", "99134", "58999", "", "75012"]   # 20 French codes the table should know
    path.write_bytes(rpu_file([visit(ENTREE=f"0{1 + i % 7}/11/2026 1{i % 10}:00",
                                     SORTIE=f"0{1 + i % 7}/11/2026 1{i % 10}:30", CP=cp) for i, cp in enumerate(cps)],
                              finess=ETAB, debut="01/11/2026", fin="07/11/2026", extract="08/11/2026 02:00:00"))
    assert intake.ingest_path(region, db, path, sender=ETAB)["status"] == "accepted"
    args = ([ETAB], date(2026, 1, 1), date(2026, 11, 30))
    with store.connection(db) as conn:
        with pytest.raises(geo.GeoTableError, match=r"table \(pmsi_geo\) is empty.*rpu geo load"):
            geo.check_coverage(conn, region, *args)
        geo.load(conn, _table(tmp_path / "t.csv", {"58110": "58G01", "75011": "75011"}))
        ok = geo.check_coverage(conn, region, *args)                   # 19 of 20: 95 %
        assert (ok["eligible"], ok["matched"]) == (20, 19)
        geo.load(conn, _table(tmp_path / "t.csv", {"58110": "58G01"}))
        with pytest.raises(geo.GeoTableError, match=r"maps only 18 of 20 .*\(90\.0%; at least 95% needed"):
            geo.check_coverage(conn, region, *args)
        lenient = region.adjusted(atih={"geo_min_match": 0.9})
        assert geo.check_coverage(conn, lenient, *args)["share"] == 0.9


def test_two_loads_at_once_are_serialised_instead_of_colliding(db, tmp_path):
    """A load waits for the one in progress to commit, then replaces its rows: no duplicate key (two ATIH tasks
    loading the region's file at once used to collide on the table's primary key)."""
    first = _table(tmp_path / "a.csv", {"58110": "58G01", "58120": "58G01"})
    second = _table(tmp_path / "b.csv", {"58110": "58G09", "58120": "58G09"})
    holder = store.connect(db)
    errors: list[BaseException] = []
    try:
        outer = holder.transaction()
        outer.__enter__()
        geo.load(holder, first)                 # loaded, not committed: the other load must wait for it
        done = threading.Event()

        def other():
            try:
                with store.connection(db) as conn:
                    geo.load(conn, second)
            except BaseException as exc:        # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=other)
        t.start()
        assert not done.wait(1.0), "the second load did not wait for the first"
        outer.__exit__(None, None, None)        # commit the first load
        t.join(30)
    finally:
        holder.close()
    assert errors == []
    assert _in_use(db) == {"58110": "58G09", "58120": "58G09"}
    assert psycopg.connect(db).execute("SELECT count(*) FROM geo_load").fetchone() == (2,)
