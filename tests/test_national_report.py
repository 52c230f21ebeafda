"""The national page (`rpu report national`): the region × month grid of ATIH's presentation page, its counting
rules, and the drill-down per establishment, on the real PostgreSQL of the test session."""
from __future__ import annotations

import csv
import io
import json

from support.national_files import atih_file, receive
from rpu import cli

A, A2, B = "990000127", "990000119", "990000135"   # A2: another site of the demo region


def seed(tmp_path, db):
    # A: May file (1 Jan–31 May), then June's; a weekly file ending 15 June comes before June's, and a later
    # re-send of May with a corrected count supersedes the first May file in M5
    receive(tmp_path, db, atih_file({1: 3, 5: 4}, extract="02/06/2026 06:00:00"), "a-may.xml")
    receive(tmp_path, db, atih_file({1: 3, 5: 4, 6: 1}, fin="15/06/2026", extract="16/06/2026 06:00:00"), "a-w.xml")
    receive(tmp_path, db, atih_file({1: 3, 5: 4, 6: 2}, extract="02/07/2026 06:00:00"), "a-june.xml")
    receive(tmp_path, db, atih_file({1: 3, 5: 6}, extract="03/07/2026 06:00:00"), "a-may-resent.xml")
    # A's second unit (ORDRE 1): one more file, same establishment; another site of the region
    receive(tmp_path, db, atih_file({5: 2}, ordre="1", extract="02/06/2026 07:00:00"), "a1-may.xml")
    receive(tmp_path, db, atih_file({2: 5, 5: 1}, finess=B, extract="02/06/2026 06:30:00"), "b-may.xml")
    # what never counts: a duplicate, a refused file, another year
    receive(tmp_path, db, atih_file({1: 3, 5: 4, 6: 2}, extract="02/07/2026 06:00:00"), "a-june-again.xml")
    receive(tmp_path, db, atih_file({5: 9}, debut="01/02/2026", finess=A2), "bad.xml")
    receive(tmp_path, db, atih_file({5: 7}, year=2025, finess=A2), "a2-2025.xml")


def test_the_grid_counts_files_per_finess_ordre_and_rpu_of_the_latest(tmp_path, national_db, capsys):
    seed(tmp_path, national_db)
    assert cli.main(["report", "national", "--db", national_db, "--year", "2026", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["year"] == 2026
    cells = {(r["region"], r["month"]): (r["files"], r["establishments"], r["rpu"]) for r in report["rows"]}
    assert cells[("demo", 5)] == (3, 2, 9 + 2 + 6)       # A_0 (re-sent May: 9), A_1 (2), B (6)
    assert cells[("demo", 6)] == (1, 1, 9)               # A_0: June's file, not the weekly one
    assert cells[("demo", 4)] == (0, 0, 0) and cells[("demo", 1)] == (0, 0, 0)
    assert len(report["rows"]) == 12                     # the demo region only (config/regions), every month
    total = {t["month"]: (t["files"], t["establishments"], t["rpu"]) for t in report["total"]}
    assert total[5] == (3, 2, 17) and total[6] == (1, 1, 9)
    # CSV: the same figures, one line per region and month, then the total
    assert cli.main(["report", "national", "--db", national_db, "--year", "2026", "--format", "csv"]) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out), delimiter=";"))
    assert {"region": "demo", "month": "5", "files": "3", "establishments": "2", "rpu": "17"} in lines
    assert lines[-12]["region"] == "Total général" and lines[-8] == {
        "region": "Total général", "month": "5", "files": "3", "establishments": "2", "rpu": "17"}
    # the table: the slides' grid
    assert cli.main(["report", "national", "--db", national_db, "--year", "2026"]) == 0
    text = capsys.readouterr().out
    assert "Région de démonstration" in text and "3 | 17" in text and "Total général" in text
    # another year: its own files only
    assert cli.main(["report", "national", "--db", national_db, "--year", "2025", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["month"], r["rpu"]) for r in report["rows"] if r["files"]] == [(5, 7)]


def test_drill_down_per_establishment_and_month(tmp_path, national_db, capsys):
    seed(tmp_path, national_db)
    assert cli.main(["report", "national", "--db", national_db, "--year", "2026", "--region", "demo",
                     "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["finess"], r["ordre"]): {c["month"]: c["rpu"] for c in r["cells"] if c["rpu"] is not None}
            for r in report["rows"]}
    assert rows[(A, 0)] == {5: 9, 6: 9} and rows[(A, 1)] == {5: 2} and rows[(B, 0)] == {5: 6}
    assert rows[(A2, None)] == {}                        # declared, nothing accepted this year
    assert cli.main(["report", "national", "--db", national_db, "--year", "2026", "--region", "demo",
                     "--format", "csv"]) == 0
    assert f"{A};0;5;9;a-may-resent.xml" in capsys.readouterr().out
