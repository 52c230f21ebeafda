"""Reports (`rpu report transmissions|quality`) against figures computed by hand on small fixtures."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date

import psycopg
import pytest

from rpu import intake, reports, store
from rpu import rpu_format as F
from rpu.cli import main
from rpu.config import get_region
from rpu.problems import RULES
from support.rpu_xml import rpu_file, visit

A, B, C = "990000101", "990000119", "990000127"   # C is a shadow establishment without any data
REGION_YAML = """\
code: testreg
name: Région de test
timezone: Europe/Paris
alerts: {ars: ["veille@ars-test.example.org"]}
establishments:
  - {finess: "990000101", name: "CH Alpha"}
  - {finess: "990000119", name: "CH Bêta"}
  - {finess: "990000127", name: "Clinique Gamma", status: shadow}
"""


@pytest.fixture
def region(tmp_path, monkeypatch):
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "testreg.yaml").write_text(REGION_YAML, encoding="utf-8")
    monkeypatch.setenv("RPU_REGIONS_DIR", str(regions))
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "var"))
    return get_region("testreg")


def sql(db, text, *params):
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(text, params)
        return cur.fetchall() if cur.description else None


def at(day: str, hour: int = 10) -> dict:
    """A visit entered on `day` (JJ/MM/AAAA), out 2 hours later."""
    return visit(ENTREE=f"{day} {hour:02d}:00", SORTIE=f"{day} {hour + 2:02d}:00")


def ingest(region, db, tmp_path, name, data, sender):
    path = tmp_path / name
    path.write_bytes(data)
    return intake.ingest_path(region, db, path, sender=sender)["status"]


# --- transmissions ----------------------------------------------------------------------------------------
#
# A  a1  EXTRACT 05/01  period 31/12/2025–04/01: 31/12/2025 ×1 (not 2026), 01/01 ×2, 03/01 ×1
#    a2  EXTRACT 01/02  period 26/01–31/01: 28/01 ×1, 31/01 ×1 (entered in January, file extracted in February)
#    a2 again, other name            → duplicate: counts nowhere
#    bad EXTRACT 15/02, truncated    → rejected in February
#    a3  EXTRACT 02/03  period 25/02–01/03: 25/02 ×1, 01/03 ×2
#    stored: Jan 5, Feb 1, Mar 2  → cumulative RPUs 5 / 6 / 8; files 1 / 2 / 3; rejected 0 / 1 / 1
# B  b1  EXTRACT 10/02  period 01/02–09/02: 01/02 ×2, 09/02 ×1, + one visit without ENTREE (rejected visit)
#    b2  EXTRACT 15/03  period 09/02–14/03: 09/02 ×2 (replaces b1's day), 14/03 ×1
#    unknown FINESS deposited by B, received 10/03 (no EXTRACT read) → rejected in March, under B
#    stored: Feb 4 (01/02 ×2 + 09/02 ×2), Mar 1 → cumulative RPUs 0 / 4 / 5; files 0 / 1 / 2; rejected 0 / 0 / 1
# unattributed: unknown FINESS, no sender, received 20/01 → region total rejected only (January)
# ATIH ledger: A Jan cumulative 5 (sent); A Feb cumulative 5 then reprise 6 sent later (the reprise counts);
#   A Mar failed 9 (ignored) and sent 7 (stored 8: mismatch); B weekly file to Sunday 08/02: 2 (stored over its
#   period: 2, while B's February cumulative is 4); an InVS row and a 2025 ATIH row are ignored.

@pytest.fixture
def transmissions_db(db, region, tmp_path):
    assert ingest(region, db, tmp_path, "a1.xml", rpu_file(
        [at("31/12/2025"), at("01/01/2026"), at("01/01/2026", 14), at("03/01/2026")], finess=A,
        extract="05/01/2026 03:00:00", debut="31/12/2025", fin="04/01/2026"), A) == "accepted"
    a2 = rpu_file([at("28/01/2026"), at("31/01/2026", 21)], finess=A, extract="01/02/2026 03:00:00",
                  debut="26/01/2026", fin="31/01/2026")
    assert ingest(region, db, tmp_path, "a2.xml", a2, A) == "accepted"
    assert ingest(region, db, tmp_path, "a2-again.xml", a2, A) == "duplicate"
    bad = rpu_file([at("14/02/2026"), at("14/02/2026")], finess=A, extract="15/02/2026 03:00:00",
                   debut="14/02/2026", fin="14/02/2026")
    assert ingest(region, db, tmp_path, "bad.xml", bad[: len(bad) - 30], A) == "rejected"
    assert ingest(region, db, tmp_path, "a3.xml", rpu_file(
        [at("25/02/2026"), at("01/03/2026"), at("01/03/2026", 15)], finess=A, extract="02/03/2026 03:00:00",
        debut="25/02/2026", fin="01/03/2026"), A) == "accepted"
    assert ingest(region, db, tmp_path, "b1.xml", rpu_file(
        [at("01/02/2026"), at("01/02/2026", 11), at("09/02/2026"), visit(ENTREE="")], finess=B,
        extract="10/02/2026 03:00:00", debut="01/02/2026", fin="09/02/2026"), B) == "accepted"
    assert ingest(region, db, tmp_path, "b2.xml", rpu_file(
        [at("09/02/2026"), at("09/02/2026", 16), at("14/03/2026")], finess=B, extract="15/03/2026 03:00:00",
        debut="09/02/2026", fin="14/03/2026"), B) == "accepted"
    assert ingest(region, db, tmp_path, "b-unknown.xml", rpu_file([at("09/03/2026")], finess="990000226"), B) \
        == "rejected"
    assert ingest(region, db, tmp_path, "nobody.xml", rpu_file([at("19/01/2026")], finess="990000226"), None) \
        == "rejected"
    sql(db, "UPDATE received_file SET received_at = '2026-03-10 12:00+01' WHERE file_name = 'b-unknown.xml'")
    sql(db, "UPDATE received_file SET received_at = '2026-01-20 12:00+01' WHERE file_name = 'nobody.xml'")
    ledger = [  # recipient, kind, etab, start, end, visits, status, sent_at
        ("atih", "cumulative", A, "2026-01-01", "2026-01-31", 5, "sent", "2026-02-02 06:00+01"),
        ("atih", "cumulative", A, "2026-01-01", "2026-02-28", 5, "sent", "2026-03-02 06:00+01"),
        ("atih", "reprise", A, "2026-01-01", "2026-02-28", 6, "sent", "2026-03-04 09:30+01"),
        ("atih", "cumulative", A, "2026-01-01", "2026-03-31", 9, "failed", None),
        ("atih", "cumulative", A, "2026-01-01", "2026-03-31", 7, "sent", "2026-04-02 06:00+02"),
        ("atih", "cumulative", B, "2026-01-01", "2026-02-08", 2, "sent", "2026-02-09 06:00+01"),
        ("invs", "daily", A, "2026-01-25", "2026-01-31", 99, "sent", "2026-02-01 05:30+01"),
        ("atih", "cumulative", A, "2025-01-01", "2025-12-31", 40, "sent", "2026-01-02 06:00+01"),
    ]
    for i, (rec, kind, etab, start, end, visits, status, sent_at) in enumerate(ledger):
        sql(db, """INSERT INTO send_ledger (recipient, kind, etab, period_start, period_end, run_id, file_name,
                   sha256, size_bytes, visits, local_path, status, attempts, sent_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, repeat('0', 64), 100, %s, '/outbox/x', %s, 1, %s)""",
            rec, kind, etab, start, end, f"run{i}", f"{rec.upper()}_{etab}_{start}_{end}_{kind}.xml", visits,
            status, sent_at)
    return db


def grid(report, key):
    """{name: [12 values]} of one key of the cells."""
    return {row["name"]: [c[key] for c in row["cells"]] for row in report["rows"]}


def cumulative(*values):
    """Twelve months: the values given, then the last one repeated (nothing after)."""
    return list(values) + [values[-1]] * (12 - len(values))


def test_transmissions_grid(transmissions_db, region):
    with store.connection(transmissions_db) as conn:
        r = reports.transmissions(conn, region, 2026)
    assert r["report"] == "transmissions" and r["year"] == 2026 and r["region"] == "testreg"
    assert r["months"][0] == "2026-01" and r["months"][-1] == "2026-12" and len(r["months"]) == 12
    assert r["month_ends"][:3] == ["2026-01-31", "2026-02-28", "2026-03-31"]
    assert [(row["finess"], row["name"], row["status"], row["total"]) for row in r["rows"]] == [
        (A, "CH Alpha", "active", False), (B, "CH Bêta", "active", False),
        (C, "Clinique Gamma", "shadow", False), (None, "Total région", None, True)]
    assert grid(r, "files") == {"CH Alpha": cumulative(1, 2, 3), "CH Bêta": cumulative(0, 1, 2),
                                "Clinique Gamma": cumulative(0), "Total région": cumulative(1, 3, 5)}
    assert grid(r, "rpus") == {"CH Alpha": cumulative(5, 6, 8), "CH Bêta": cumulative(0, 4, 5),
                               "Clinique Gamma": cumulative(0), "Total région": cumulative(5, 10, 13)}
    assert grid(r, "rejected_files") == {"CH Alpha": cumulative(0, 1, 1), "CH Bêta": cumulative(0, 0, 1),
                                         "Clinique Gamma": cumulative(0), "Total région": cumulative(1, 2, 3)}
    none9 = [None] * 9
    assert grid(r, "match") == {"CH Alpha": [True, True, False] + none9, "CH Bêta": [None, True, None] + none9,
                                "Clinique Gamma": [None] * 12, "Total région": [True, True, False] + none9}
    atih = grid(r, "atih")
    assert [(a["visits"], a["stored"], a["kind"], a["period_end"]) for a in atih["CH Alpha"][:3]] == [
        (5, 5, "cumulative", "2026-01-31"), (6, 6, "reprise", "2026-02-28"), (7, 8, "cumulative", "2026-03-31")]
    assert atih["CH Alpha"][1]["sent_at"] == "2026-03-04T09:30:00+01:00"
    assert atih["CH Alpha"][1]["file_name"] == f"ATIH_{A}_2026-01-01_2026-02-28_reprise.xml"
    assert atih["CH Alpha"][3:] == [None] * 9
    assert atih["CH Bêta"][1] == {
        "visits": 2, "stored": 2, "kind": "cumulative", "period_start": "2026-01-01", "period_end": "2026-02-08",
        "sent_at": "2026-02-09T06:00:00+01:00", "file_name": f"ATIH_{B}_2026-01-01_2026-02-08_cumulative.xml"}
    assert [atih["CH Bêta"][0], atih["CH Bêta"][2]] == [None, None]
    assert atih["Total région"][:4] == [{"visits": 5, "stored": 5, "establishments": 1},
                                        {"visits": 8, "stored": 8, "establishments": 2},
                                        {"visits": 7, "stored": 8, "establishments": 1}, None]
    json.dumps(r)   # JSON-friendly as is


def test_transmissions_other_year_is_empty_but_lists_every_establishment(transmissions_db, region):
    with store.connection(transmissions_db) as conn:
        r = reports.transmissions(conn, region, 2025)
    # the visit of 31/12/2025 is in 2025; its file (EXTRACT 05/01/2026) is not
    assert grid(r, "files") == {name: [0] * 12 for name in ("CH Alpha", "CH Bêta", "Clinique Gamma", "Total région")}
    assert grid(r, "rpus")["CH Alpha"] == [0] * 11 + [1]
    # the 2025 ATIH file ends in December 2025: its figure, compared with what is stored now
    dec = r["rows"][0]["cells"][11]
    assert (dec["atih"]["visits"], dec["atih"]["stored"], dec["match"]) == (40, 1, False)


def test_transmissions_unconfigured_establishment_gets_its_own_row(transmissions_db, region):
    sql(transmissions_db, "UPDATE visit SET etab = '990000135' WHERE entry_date = '2026-03-14'")
    with store.connection(transmissions_db) as conn:
        r = reports.transmissions(conn, region, 2026)
    assert [row["name"] for row in r["rows"]] == ["CH Alpha", "CH Bêta", "Clinique Gamma", "(hors configuration)",
                                                 "Total région"]
    assert r["rows"][3]["finess"] == "990000135" and r["rows"][3]["configured"] is False
    assert grid(r, "rpus")["(hors configuration)"] == cumulative(0, 0, 1)
    assert grid(r, "rpus")["CH Bêta"] == cumulative(0, 4, 4)
    assert grid(r, "rpus")["Total région"] == cumulative(5, 10, 13)


def test_transmissions_table_csv_json(transmissions_db, region):
    with store.connection(transmissions_db) as conn:
        r = reports.transmissions(conn, region, 2026)
    table = reports.render(r, "table")
    lines = table.splitlines()
    assert lines[0] == "Transmissions 2026 — Région de test (testreg)"
    header = next(line for line in lines if line.startswith("FINESS"))
    assert header.split()[:5] == ["FINESS", "Établissement", "janv.", "févr.", "mars"]
    assert header.split()[-1] == "déc."
    alpha = [line for line in lines if line.startswith(A)]
    assert len(alpha) == 3   # the grid, the ATIH grid, the rejected files
    assert re.findall(r"(\d+) \| +(\d+)", alpha[0])[:4] == [("1", "5"), ("2", "6"), ("3", "8"), ("3", "8")]
    assert "CH Alpha" in alpha[0]
    assert re.split(r"\s{2,}", alpha[1])[:6] == [A, "CH Alpha", "5 ok", "6 ok", "7 ≠ 8", "—"]
    beta = [line for line in lines if line.startswith(B)]
    assert re.split(r"\s{2,}", beta[1])[:5] == [B, "CH Bêta", "—", "2 ok (au 08/02)", "—"]
    total = [line for line in lines if "Total région" in line]
    assert re.findall(r"(\d+) \| +(\d+)", total[0])[:3] == [("1", "5"), ("3", "10"), ("5", "13")]
    assert re.split(r"\s{2,}", total[2].strip())[:4] == ["Total région", "1", "2", "3"]
    # each month's column is aligned: "files | RPUs" cells of one column have the same width
    grid_lines = lines[lines.index(header):][:6]
    assert len({line.index("|") for line in grid_lines[2:]}) == 1

    rows = list(csv.DictReader(io.StringIO(reports.render(r, "csv")), delimiter=";"))
    assert list(rows[0]) == reports.TRANSMISSIONS_CSV
    assert len(rows) == 4 * 12
    assert rows[2] == {"finess": A, "name": "CH Alpha", "month": "2026-03", "month_end": "2026-03-31", "files": "3",
                       "rpus": "8", "rejected_files": "1", "atih_visits": "7", "atih_stored": "8",
                       "atih_period_end": "2026-03-31", "atih_kind": "cumulative",
                       "atih_file_name": f"ATIH_{A}_2026-01-01_2026-03-31_cumulative.xml",
                       "atih_sent_at": "2026-04-02T06:00:00+02:00", "match": "no"}
    assert rows[12 + 3] == {"finess": B, "name": "CH Bêta", "month": "2026-04", "month_end": "2026-04-30",
                            "files": "2", "rpus": "5", "rejected_files": "1", "atih_visits": "", "atih_stored": "",
                            "atih_period_end": "", "atih_kind": "", "atih_file_name": "", "atih_sent_at": "",
                            "match": ""}
    assert [(x["finess"], x["files"], x["rpus"], x["match"]) for x in rows[36:39]] == [
        ("", "1", "5", "yes"), ("", "3", "10", "yes"), ("", "5", "13", "no")]

    assert json.loads(reports.render(r, "json")) == r


def test_transmissions_cli(transmissions_db, region, capsys):
    assert main(["report", "transmissions", "--region", "testreg", "--db", transmissions_db, "--year", "2026",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert grid(out, "rpus")["Total région"] == cumulative(5, 10, 13)
    assert main(["report", "transmissions", "--region", "testreg", "--db", transmissions_db, "--year", "2026"]) == 0
    assert "1 | 5" in capsys.readouterr().out
    assert main(["report", "transmissions", "--region", "testreg", "--db", transmissions_db, "--year", "2026",
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith(";".join(reports.TRANSMISSIONS_CSV) + "\n")


# --- quality ----------------------------------------------------------------------------------------------
#
# A, entered in November 2026 (6 visits; a 7th on 31/10 with bad values is outside the period):
#   a1 good
#   a2 CP "7501" (bad format), SEXE "X", DP empty, TRANSPORT empty         flags CP_FORMAT, SEXE_DOMAIN
#   a3 MODE_SORTIE 6, DESTINATION 1, ORIENT MED, born 1880                  flag  AGE_RANGE
#   a4 MODE_SORTIE 7, DESTINATION 6 (incoherent), ORIENT empty, DP "R07.4"  flag  DESTINATION_INCOHERENT
#   a5 ORIENT FUGUE (DP not expected), DP empty, out before in              flag  DURATION_NEGATIVE
#   a6 PROVENANCE 1 after MODE_ENTREE 8, no DA, ACTE "XX", DP "abc", SEXE "X"
#                                  flags PROVENANCE_INCOHERENT, ACTE_FORMAT, DP_FORMAT, SEXE_DOMAIN
# B (2 visits): b1 good; b2 COMMUNE and MOTIF empty, GRAVITE "9", NAISSANCE "31/02/2000"
#                                  flags GRAVITE_DOMAIN, NAISSANCE_INVALID
# C: no visit.

@pytest.fixture
def quality_db(db, region, tmp_path):
    day = "02/11/2026"
    a = [
        at(day),
        visit(ENTREE=f"{day} 10:00", SORTIE=f"{day} 11:00", CP="7501", SEXE="X", DP="", TRANSPORT=""),
        visit(ENTREE=f"{day} 10:00", SORTIE=f"{day} 11:00", MODE_SORTIE="6", DESTINATION="1", ORIENT="MED",
              NAISSANCE="01/01/1880"),
        visit(ENTREE=f"{day} 10:00", SORTIE=f"{day} 11:00", MODE_SORTIE="7", DESTINATION="6", ORIENT="",
              DP="R07.4"),
        visit(ENTREE=f"{day} 10:00", SORTIE=f"{day} 09:00", ORIENT="FUGUE", DP=""),
        visit(ENTREE=f"{day} 10:00", SORTIE=f"{day} 11:00", MODE_ENTREE="8", PROVENANCE="1", LISTE_DA=[],
              LISTE_ACTES=["XX"], DP="abc", SEXE="X"),
        visit(ENTREE="31/10/2026 10:00", SORTIE="31/10/2026 11:00", SEXE="X", CP="", DP=""),
    ]
    assert ingest(region, db, tmp_path, "qa.xml", rpu_file(a, finess=A, extract="03/11/2026 03:00:00",
                                                           debut="31/10/2026", fin="02/11/2026"), A) == "accepted"
    b = [at("15/11/2026"), visit(ENTREE="15/11/2026 10:00", SORTIE="15/11/2026 11:00", COMMUNE="", MOTIF="",
                                 GRAVITE="9", NAISSANCE="31/02/2000")]
    assert ingest(region, db, tmp_path, "qb.xml", rpu_file(b, finess=B, extract="16/11/2026 03:00:00",
                                                           debut="15/11/2026", fin="15/11/2026"), B) == "accepted"
    return db


# item: (completeness %, exploitabilité %) — hand-computed from the fixture above
EXPECTED_A = {
    "CP": (100.0, 83.3), "COMMUNE": (100.0, 100.0), "NAISSANCE": (100.0, 83.3), "SEXE": (100.0, 66.7),
    "ENTREE": (100.0, 100.0), "MODE_ENTREE": (100.0, 100.0), "PROVENANCE": (100.0, 83.3),
    "TRANSPORT": (83.3, 83.3), "TRANSPORT_PEC": (100.0, 100.0), "MOTIF": (100.0, 100.0),
    "GRAVITE": (100.0, 100.0), "DP": (80.0, 60.0), "LISTE_DA": (83.3, 83.3), "LISTE_ACTES": (100.0, 83.3),
    "SORTIE": (100.0, 83.3), "MODE_SORTIE": (100.0, 100.0), "DESTINATION": (100.0, 50.0), "ORIENT": (50.0, 50.0),
}
EXPECTED_B = {
    "CP": (100.0, 100.0), "COMMUNE": (50.0, 50.0), "NAISSANCE": (100.0, 50.0), "SEXE": (100.0, 100.0),
    "ENTREE": (100.0, 100.0), "MODE_ENTREE": (100.0, 100.0), "PROVENANCE": (100.0, 100.0),
    "TRANSPORT": (100.0, 100.0), "TRANSPORT_PEC": (100.0, 100.0), "MOTIF": (50.0, 50.0),
    "GRAVITE": (100.0, 50.0), "DP": (100.0, 100.0), "LISTE_DA": (100.0, 100.0), "LISTE_ACTES": (100.0, 100.0),
    "SORTIE": (100.0, 100.0), "MODE_SORTIE": (100.0, 100.0), "DESTINATION": (None, None), "ORIENT": (None, None),
}
EXPECTED_REGION = {
    "CP": (100.0, 87.5), "COMMUNE": (87.5, 87.5), "NAISSANCE": (100.0, 75.0), "SEXE": (100.0, 75.0),
    "ENTREE": (100.0, 100.0), "MODE_ENTREE": (100.0, 100.0), "PROVENANCE": (100.0, 87.5),
    "TRANSPORT": (87.5, 87.5), "TRANSPORT_PEC": (100.0, 100.0), "MOTIF": (87.5, 87.5),
    "GRAVITE": (100.0, 87.5), "DP": (85.7, 71.4), "LISTE_DA": (87.5, 87.5), "LISTE_ACTES": (100.0, 87.5),
    "SORTIE": (100.0, 87.5), "MODE_SORTIE": (100.0, 100.0), "DESTINATION": (100.0, 50.0), "ORIENT": (50.0, 50.0),
}
# item: (denominator, filled, valid) where the denominator is not every visit
EXPECTED_COUNTS = {
    "A": {"DP": (5, 4, 3), "DESTINATION": (2, 2, 1), "ORIENT": (2, 1, 1), "CP": (6, 6, 5)},
    "B": {"DP": (2, 2, 2), "DESTINATION": (0, 0, 0), "ORIENT": (0, 0, 0), "CP": (2, 2, 2)},
    "Total région": {"DP": (7, 6, 5), "DESTINATION": (2, 2, 1), "ORIENT": (2, 1, 1), "CP": (8, 8, 7)},
}
# rule: % of visits flagged (rules not listed: 0.0; C: None, no visit)
FLAGS_A = {"CP_FORMAT": 16.7, "SEXE_DOMAIN": 33.3, "AGE_RANGE": 16.7, "DESTINATION_INCOHERENT": 16.7,
           "DURATION_NEGATIVE": 16.7, "PROVENANCE_INCOHERENT": 16.7, "ACTE_FORMAT": 16.7, "DP_FORMAT": 16.7}
FLAGS_B = {"GRAVITE_DOMAIN": 50.0, "NAISSANCE_INVALID": 50.0}
FLAGS_REGION = {"CP_FORMAT": 12.5, "SEXE_DOMAIN": 25.0, "AGE_RANGE": 12.5, "DESTINATION_INCOHERENT": 12.5,
                "DURATION_NEGATIVE": 12.5, "PROVENANCE_INCOHERENT": 12.5, "ACTE_FORMAT": 12.5, "DP_FORMAT": 12.5,
                "GRAVITE_DOMAIN": 12.5, "NAISSANCE_INVALID": 12.5}


def pcts(row):
    return {item: (m["completeness_pct"], m["exploitability_pct"]) for item, m in row["items"].items()}


def test_quality_by_item_and_establishment(quality_db, region):
    with store.connection(quality_db) as conn:
        r = reports.quality(conn, region, date(2026, 11, 1), date(2026, 11, 30))
    assert r["items"] == list(F.ITEMS) and r["start"] == "2026-11-01" and r["end"] == "2026-11-30"
    alpha, beta, gamma, total = r["rows"]
    assert [x["name"] for x in r["rows"]] == ["CH Alpha", "CH Bêta", "Clinique Gamma", "Total région"]
    assert (alpha["visits"], beta["visits"], gamma["visits"], total["visits"]) == (6, 2, 0, 8)
    assert pcts(alpha) == EXPECTED_A
    assert pcts(beta) == EXPECTED_B
    assert pcts(total) == EXPECTED_REGION
    assert pcts(gamma) == {item: (None, None) for item in F.ITEMS}
    for row, name in ((alpha, "A"), (beta, "B"), (total, "Total région")):
        for item, expected in EXPECTED_COUNTS[name].items():
            m = row["items"][item]
            assert (m["denominator"], m["filled"], m["valid"]) == expected, (name, item)
    assert r["denominators"]["DP"].startswith("passages dont ORIENT") and r["denominators"]["CP"] == "tous les passages"
    json.dumps(r)


def test_quality_flag_shares(quality_db, region):
    with store.connection(quality_db) as conn:
        r = reports.quality(conn, region, date(2026, 11, 1), date(2026, 11, 30))
    alpha, beta, gamma, total = r["rows"]
    assert (alpha["flagged_visits"], alpha["flagged_pct"]) == (5, 83.3)
    assert (beta["flagged_visits"], beta["flagged_pct"]) == (1, 50.0)
    assert (gamma["flagged_visits"], gamma["flagged_pct"]) == (0, None)
    assert (total["flagged_visits"], total["flagged_pct"]) == (6, 75.0)
    assert r["rules"] == [rule for rule, (level, _) in RULES.items() if level == "quality"]
    for row, expected in ((alpha, FLAGS_A), (beta, FLAGS_B), (total, FLAGS_REGION)):
        assert {rule: f["pct"] for rule, f in row["flags"].items() if f["visits"]} == expected
        assert all(f["pct"] == 0.0 for rule, f in row["flags"].items() if rule not in expected)
    assert alpha["flags"]["SEXE_DOMAIN"] == {"visits": 2, "pct": 33.3}
    assert all(f == {"visits": 0, "pct": None} for f in gamma["flags"].values())


def test_quality_period_bounds_are_inclusive(quality_db, region):
    with store.connection(quality_db) as conn:
        r = reports.quality(conn, region, date(2026, 10, 31), date(2026, 11, 2))
        with pytest.raises(ValueError, match=r"the period ends \(2026-11-01\) before it starts \(2026-11-02\)"):
            reports.quality(conn, region, date(2026, 11, 2), date(2026, 11, 1))
    alpha, beta, _, total = r["rows"]
    assert (alpha["visits"], beta["visits"], total["visits"]) == (7, 0, 7)
    assert alpha["items"]["SEXE"] == {"denominator": 7, "filled": 7, "valid": 4, "completeness_pct": 100.0,
                                          "exploitability_pct": 57.1}


def test_quality_table_csv_json(quality_db, region):
    with store.connection(quality_db) as conn:
        r = reports.quality(conn, region, date(2026, 11, 1), date(2026, 11, 30))
    lines = reports.render(r, "table").splitlines()
    assert lines[0] == "Qualité des RPU — Région de test (testreg), passages entrés du 2026-11-01 au 2026-11-30"
    alpha = [re.split(r"\s{2,}", line) for line in lines if line.startswith(A)]
    assert len(alpha) == 3   # completeness, exploitabilité, flags
    assert alpha[0][:3] == [A, "CH Alpha", "6"] and alpha[0][3:] == [f"{EXPECTED_A[i][0]:.1f}" for i in F.ITEMS]
    assert alpha[1][3:] == [f"{EXPECTED_A[i][1]:.1f}" for i in F.ITEMS]
    gamma = [re.split(r"\s{2,}", line) for line in lines if line.startswith(C)]
    assert gamma[0] == [C, "Clinique Gamma", "0"] + ["—"] * 18
    flag_header = [re.split(r"\s{2,}", line) for line in lines if line.startswith("FINESS")][2]
    seen = [rule for rule in r["rules"] if rule in FLAGS_REGION]
    assert flag_header == ["FINESS", "Établissement", "Passages", "Signalés"] + seen
    assert alpha[2][3:] == ["83.3"] + [f"{FLAGS_A.get(rule, 0.0):.1f}" for rule in seen]
    assert "  SEXE_DOMAIN : valeur de SEXE hors nomenclature" in lines

    rows = list(csv.DictReader(io.StringIO(reports.render(r, "csv")), delimiter=";"))
    assert list(rows[0]) == reports.QUALITY_CSV
    per_entity = 2 * 18 + 1 + len(r["rules"])
    assert len([x for x in rows if not x["measure"].startswith("gate_")]) == 4 * per_entity
    by_key = {(x["finess"], x["measure"], x["key"]): x for x in rows}
    assert by_key[(A, "completeness", "DP")] == {"finess": A, "name": "CH Alpha", "measure": "completeness",
                                                      "key": "DP", "count": "4", "denominator": "5", "pct": "80.0"}
    assert (by_key[(A, "exploitability", "DP")]["count"], by_key[(A, "exploitability", "DP")]["pct"]) == ("3", "60.0")
    assert by_key[("", "flagged", "ANY")]["pct"] == "75.0" and by_key[("", "flagged", "ANY")]["name"] == "Total région"
    assert by_key[("", "flagged", "SEXE_DOMAIN")]["count"] == "2"
    assert by_key[(B, "completeness", "DESTINATION")]["pct"] == ""

    assert json.loads(reports.render(r, "json")) == r


def test_quality_cli(quality_db, region, capsys):
    base = ["report", "quality", "--region", "testreg", "--db", quality_db]
    assert main(base + ["--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert pcts(out["rows"][-1]) == EXPECTED_REGION
    assert main(base + ["--from", "2026-11-01", "--to", "2026-11-30"]) == 0
    assert "Exploitabilité" in capsys.readouterr().out
    assert main(base + ["--from", "2026-11-30", "--to", "2026-11-01"]) == 2
    assert "--to" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["report"],
    ["report", "transmissions", "--region", "testreg", "--db", "postgresql:///x"],
    ["report", "transmissions", "--region", "testreg", "--db", "postgresql:///x", "--year", "26"],
    ["report", "transmissions", "--region", "testreg", "--db", "postgresql:///x", "--year", "2026", "--format", "xml"],
    ["report", "quality", "--region", "testreg", "--db", "postgresql:///x", "--from", "2026-11-01"],
    ["report", "quality", "--region", "testreg", "--db", "postgresql:///x", "--from", "01/11/2026",
     "--to", "2026-11-30"],
])
def test_cli_bad_arguments_exit_2(argv, region, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_cli_unknown_region_exits_2(region, capsys):
    assert main(["report", "transmissions", "--region", "nowhere", "--db", "postgresql:///x", "--year", "2026"]) == 2
    assert "unknown region" in capsys.readouterr().err


def test_render_rejects_unknown_format():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        reports.render({"report": "quality"}, "xml")


# --- no drift between the SQL and rpu_format -------------------------------------------------------------

def sql_domains() -> dict[str, list[str] | str]:
    """The `d` row of report_quality.sql: name → array values (or regex text)."""
    text = store.query("report_quality")
    out: dict[str, list[str] | str] = {}
    for value, name in re.findall(r"'([^']*)'::text\[\]\s+AS (\w+)", text):
        out[name] = value.strip("{}").split(",")
    for value, name in re.findall(r"'([^']*)'::text\s+AS (\w+)", text):
        out[name] = value
    return out


def test_sql_domains_are_rpu_format_domains():
    d = sql_domains()
    plain = {item: item.lower() for item in F.DOMAINS if item not in ("DESTINATION", "ORIENT")}
    for item, name in plain.items():
        assert d.pop(name) == list(F.DOMAINS[item]), item
    # DESTINATION and ORIENT are measured on hospitalised visits only: the lists allowed after MODE_SORTIE 6/7
    hospitalised = [m for m, allowed in F.ORIENT_BY_MODE_SORTIE.items() if allowed == F.ORIENT_HOSPITAL]
    assert d.pop("mode_sortie_hospitalised") == hospitalised
    assert all(F.DESTINATION_BY_MODE_SORTIE[m] == F.DESTINATION_BY_MODE_SORTIE[hospitalised[0]] for m in hospitalised)
    assert d.pop("destination_hospitalised") == list(F.DESTINATION_BY_MODE_SORTIE[hospitalised[0]])
    assert d.pop("orient_hospitalised") == list(F.ORIENT_HOSPITAL)
    assert d.pop("orient_home") == list(F.ORIENT_HOME)
    assert d.pop("cp_re") == f"^{F.CP_RE}$"
    assert d.pop("cim10_re") == f"^{F.CIM10_RE}$"
    assert d == {}, "a domain of the SQL is not checked against rpu_format"


def test_sql_measures_every_item_and_names_real_rules():
    text = store.query("report_quality")
    for item in F.ITEMS:
        for col in reports._item_cols(item):
            assert re.search(rf"\bAS {col}\b", text), col
    named = set(re.findall(r"\b[A-Z][A-Z_]+_(?:RANGE|INCOHERENT|FORMAT|NEGATIVE|LONG|INVALID|DOMAIN)\b", text))
    assert named and named <= set(RULES)


def test_sql_formats_behave_as_rpu_format(db):
    """The same values through PostgreSQL's regexes and Python's: same verdicts."""
    d = sql_domains()
    cps = ["75012", "2A004", "2B123", "99999", "7501", "750123", "A5012", "75O12", ""]
    dps = ["R074", "R07.4", "r07.4", "M62890", "R53+1", "abc", "R0", "R07456789", "I10 ", "1R07", ""]
    with psycopg.connect(db) as conn:
        for v in cps:
            assert conn.execute("SELECT %s ~ %s", (v, d["cp_re"])).fetchone()[0] == bool(F.postal_code(v)), v
        for v in dps:
            got = conn.execute("SELECT upper(replace(replace(%s, '.', ''), ' ', '')) ~ %s", (v, d["cim10_re"]))
            assert got.fetchone()[0] == bool(F.cim10(F.normalise_code(v))), v


def test_quality_report_reads_the_stored_quality_gate_results(region, db, tmp_path, capsys):
    """`rpu report quality` also shows what the quality gate (Great Expectations) stored for the files."""
    ok = [visit(ENTREE=f"0{d}/11/2026 1{i}:00", SORTIE=f"0{d}/11/2026 1{i}:30") for d in (2, 3) for i in range(3)]
    bad = [visit(ENTREE=f"04/11/2026 1{i}:00", SORTIE=f"04/11/2026 1{i}:30", SEXE="X") for i in range(4)]
    for name, visits, debut in (("ok.xml", ok, "02/11/2026"), ("bad.xml", bad, "04/11/2026")):
        path = tmp_path / name
        path.write_bytes(rpu_file(visits, finess="990000101", debut=debut, fin=debut[:2] + "/11/2026"
                                  if name == "bad.xml" else "03/11/2026",
                                  extract=f"{debut[:2]}/11/2026 05:00:00"))
        assert intake.ingest_path(region, db, path, sender="990000101")["status"] == "accepted"
    today = date.today()
    with store.connection(db) as conn:
        report = reports.quality(conn, region, date(2026, 11, 1), today)
    [g] = report["gates"]
    assert (g["finess"], g["files"], g["files_failed"], g["files_quarantined"]) == ("990000101", 2, 1, 0)
    assert g["expectations"]["SEXE_DOMAIN"] == {"files_failed": 1, "unexpected_count": 4, "blocking": False}
    assert main(["report", "quality", "--region", "testreg", "--db", db, "--from", "2026-11-01",
                 "--to", today.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "2 fichier(s) contrôlé(s), 1 avec indicateur(s) non atteint(s)" in out and "[SEXE_DOMAIN] 1 fichier(s), 4 passage(s)" in out
