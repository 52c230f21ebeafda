"""The ATIH side, reception: the national schema, checking and recording files (`rpu syrius receive`), on the
real PostgreSQL of the test session."""
from __future__ import annotations

import json

import pytest

from support.national_files import atih_file, atih_visit, receive
from rpu import cli
from rpu.national import reception, schema, settings
from support.rpu_xml import rpu_file, visit

A, B = "990000127", "990000135"


def rows(db, sql, *params):
    import psycopg

    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_migrate_national_by_the_cli_is_rerunnable_and_may_share_a_regional_database(fresh_db, capsys):
    assert cli.main(["db", "migrate", "--db", fresh_db]) == 0
    assert "001_intake.sql" in capsys.readouterr().out
    # the national schema has its own record of migrations: in a region's database, it still applies
    assert cli.main(["db", "migrate", "--national", "--db", fresh_db]) == 0
    assert "001_national.sql" in capsys.readouterr().out
    assert cli.main(["db", "migrate", "--national", "--db", fresh_db]) == 0
    assert "up to date" in capsys.readouterr().out
    tables = {r[0] for r in rows(fresh_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"national_file", "national_file_month", "national_told", "schema_migration",
            "national_schema_migration", "received_file"} <= tables


def test_an_anonymised_cumulative_file_is_counted_per_month_of_entry(tmp_path, national_db):
    r = receive(tmp_path, national_db, atih_file({1: 3, 2: 2, 5: 4}), f"ATIH_RPU_{A}_0_20260101_20260531.xml")
    assert r["status"] == "accepted", r
    assert (r["finess"], r["ordre"], r["period_start"], r["period_end"], r["rpu"]) == (
        A, 0, "2026-01-01", "2026-05-31", 9)
    assert r["rpu_per_month"] == {"2026-01": 3, "2026-02": 2, "2026-05": 4}
    assert len(r["sha256"]) == 64 and r["superseded_by"] is None
    assert rows(national_db, "SELECT region, year, status FROM national_file") == [("demo", 2026, "accepted")]
    text = reception.receipt_text(r)
    assert "ACCEPTÉ" in text and "2026-05         4" in text


def test_a_file_carrying_identifying_items_is_refused_whole_and_nothing_of_it_is_stored(tmp_path, national_db):
    visits = [atih_visit("10/01/2026")] * 3 + [visit(ENTREE="11/01/2026 10:00", SORTIE="11/01/2026 11:00")]
    r = receive(tmp_path, national_db, rpu_file(visits, finess=A, debut="01/01/2026", fin="31/01/2026"), "x.xml")
    assert (r["status"], r["rule"]) == ("rejected", "NOT_ANONYMISED")
    assert "passage n°4" in r["message"] and "CP, COMMUNE, NAISSANCE" in r["message"]
    stored = rows(national_db, "SELECT finess, ordre, rpu, period_start, extract FROM national_file")
    assert stored == [(None, None, None, None, None)]
    assert rows(national_db, "SELECT count(*) FROM national_file_month") == [(0,)]


@pytest.mark.parametrize("data, rule", [
    (atih_file({1: 2}, finess="980000016"), "FINESS_NOT_IN_REGION"),
    (atih_file({3: 2}, debut="01/02/2026"), "PERIOD_NOT_CUMULATIVE"),
    (atih_file({3: 2}, fin="31/01/2027"), "PERIOD_NOT_CUMULATIVE"),
    (atih_file({3: 2}, extract=""), "EXTRACT_MISSING"),
    (rpu_file([{k: v for k, v in atih_visit("10/01/2026").items() if k != "AGE"}], debut="01/01/2026"),
     "ATIH_LAYOUT"),
    (b"<OSCOUR><ETABLISSEMENT><FINESS>", "NOT_WELL_FORMED"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><OSCOUR/>', "DOCTYPE_FORBIDDEN"),
])
def test_refusals(tmp_path, national_db, data, rule):
    r = receive(tmp_path, national_db, data, "f.xml")
    assert (r["status"], r["rule"]) == ("rejected", rule), r
    assert rows(national_db, "SELECT count(*) FROM national_file_month") == [(0,)]


def test_a_newer_file_of_the_same_finess_ordre_and_year_supersedes_the_older(tmp_path, national_db):
    may = receive(tmp_path, national_db, atih_file({1: 3, 5: 4}), "may.xml")
    june = receive(tmp_path, national_db, atih_file({1: 3, 5: 4, 6: 1}), "june.xml")
    other_ordre = receive(tmp_path, national_db, atih_file({1: 1}, ordre="1"), "ordre1.xml")
    # a re-send of May arriving late (older EXTRACT) is superseded at once by June's
    late = receive(tmp_path, national_db, atih_file({1: 3, 5: 5}, extract="01/06/2026 05:00:00"), "may-bis.xml")
    got = dict(rows(national_db, "SELECT file_name, superseded_by FROM national_file"))
    assert got == {"may.xml": june["file_id"], "june.xml": None, "ordre1.xml": None, "may-bis.xml": june["file_id"]}
    assert other_ordre["superseded_by"] is None and late["status"] == "accepted" and may["status"] == "accepted"
    # the same content again is a duplicate: counted once, nothing superseded
    dup = receive(tmp_path, national_db, atih_file({1: 3, 5: 4, 6: 1}), "june-again.xml")
    assert (dup["status"], dup["duplicate_of"], dup["rpu"]) == ("duplicate", june["file_id"], 8)


def test_syrius_receive_exit_codes(tmp_path, national_db, capsys):
    ok = tmp_path / "ok.xml"
    ok.write_bytes(atih_file({1: 2}))
    bad = tmp_path / "bad.xml"
    bad.write_bytes(rpu_file([visit(ENTREE="10/01/2026 10:00")], debut="01/01/2026", fin="31/01/2026"))
    assert cli.main(["syrius", "receive", "--region", "demo", "--db", national_db, str(ok)]) == 0
    assert "ACCEPTÉ" in capsys.readouterr().out
    assert cli.main(["syrius", "receive", "--region", "demo", "--db", national_db, "--json", str(ok), str(bad)]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["status"], r["rule"]) for r in out] == [("duplicate", None), ("rejected", "NOT_ANONYMISED")]
    assert cli.main(["syrius", "receive", "--region", "demo", "--db", national_db, str(tmp_path / "none")]) == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["syrius", "receive", "--db", national_db, str(ok)])
    assert exc.value.code == 2
    assert cli.main(["syrius", "receive", "--region", "nowhere", "--db", national_db, str(ok)]) == 2


def test_national_settings_file(tmp_path, monkeypatch):
    from rpu.config import ConfigError

    path = tmp_path / "national.yaml"
    path.write_text("reception: {drop_dir: 'syrius/{region}', stable_seconds: 0}\nalerts: {ops: [ops@atih.test]}\n")
    monkeypatch.setenv("RPU_NATIONAL_CONFIG", str(path))
    n = settings.load()
    assert n.drop("demo", "archive") == "syrius/demo/archive" and n.ops_emails == ("ops@atih.test",)
    assert n.db_conn_id == "rpu_national_db" and n.sftp_conn_id == "rpu_syrius_sftp"
    path.write_text("reception: {drop_dir: 'no-placeholder'}\n")
    with pytest.raises(ConfigError, match="drop_dir"):
        settings.load()
