"""rpu.report_sql: what each generated fragment counts as filled and as valid, evaluated by PostgreSQL on one
stored visit (the report's figures per establishment are tested in tests/test_reports.py)."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from psycopg.types.json import Jsonb

from rpu import rpu_format as F
from rpu import store
from rpu.report_sql import HOSPITALISED, domains, filled, render, valid

BASE = {"file_id": 1, "etab": "990000127", "ordre": 0, "idx": 1, "entry_date": date(2026, 11, 1),
        "entree": datetime(2026, 11, 1, 10, 0)}


@pytest.fixture
def judge(db):
    """judge(item, **columns) → (filled, valid) of `item` on a visit stored with those columns."""
    conn = store.connect(db)
    d = ", ".join(f"{v} AS {n}" for v, n in domains())

    def run(item: str, **columns) -> tuple[bool, bool]:
        row = BASE | columns
        with conn.transaction():
            conn.execute("DELETE FROM visit")
            conn.execute(f"INSERT INTO visit ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                         list(row.values()))
            ok = valid(item) or filled(item)
            return conn.execute(f"WITH d AS (SELECT {d}) SELECT ({filled(item)}), ({ok}) FROM visit v CROSS JOIN d"
                                ).fetchone()

    yield run
    conn.close()


def test_hospitalised_modes_are_the_ones_with_a_hospital_orientation():
    assert HOSPITALISED == ("6", "7")


def test_dp_is_valid_when_its_normalised_code_is_cim10(judge):
    got = {dp: judge("DP", dp=dp) for dp in ("R074", "r07.4", "I10", "XYZ", "", None)}
    assert got == {"R074": (True, True), "r07.4": (True, True), "I10": (True, True), "XYZ": (True, False),
                   "": (False, False), None: (False, False)}


DOMAIN_CASES = [
    ("SEXE", "sexe", "F", (True, True)), ("SEXE", "sexe", "Z", (True, False)),
    ("GRAVITE", "gravite", "P", (True, True)), ("CP", "cp", "2A004", (True, True)),
    ("CP", "cp", "7501", (True, False)), ("COMMUNE", "commune", "n'importe quoi", (True, True)),
    ("DESTINATION", "destination", "1", (True, True)), ("DESTINATION", "destination", "6", (True, False)),
    ("ORIENT", "orient", "REA", (True, True)), ("ORIENT", "orient", "FUGUE", (True, False)),
]


def test_domain_format_and_free_text_items(judge):
    got = [(item, value, judge(item, **{column: value})) for item, column, value, _ in DOMAIN_CASES]
    assert got == [(item, value, expected) for item, _, value, expected in DOMAIN_CASES]


def test_an_unreadable_date_is_filled_but_not_valid(judge):
    assert judge("NAISSANCE", naissance=None, raw_invalid=Jsonb({"NAISSANCE": "31/02/1980"})) == (True, False)
    assert judge("NAISSANCE", naissance=None) == (False, False)
    assert judge("SORTIE", sortie=datetime(2026, 11, 1, 12, 0)) == (True, True)


def test_a_flag_makes_a_filled_item_unusable(judge):
    assert judge("NAISSANCE", naissance=date(1980, 2, 1)) == (True, True)
    assert judge("NAISSANCE", naissance=date(1880, 2, 1), flags=["AGE_RANGE"]) == (True, False)
    assert judge("SORTIE", sortie=datetime(2026, 11, 1, 9, 0), flags=["DURATION_NEGATIVE"]) == (True, False)
    assert judge("LISTE_DA", da=["I10"]) == (True, True)
    assert judge("LISTE_DA", da=["I10", "??"], flags=["DA_FORMAT"]) == (True, False)
    assert judge("LISTE_ACTES", actes=[]) == (False, False)
    assert judge("PROVENANCE", mode_entree="8", provenance="1", flags=["PROVENANCE_INCOHERENT"]) == (True, False)


def test_every_item_has_its_three_figures_and_the_query_runs(db):
    text = render()
    for item in F.ITEMS:
        k = item.lower()
        assert all(f"AS {k}_{s}" in text for s in ("den", "filled", "valid")), item
    with store.connection(db) as conn:
        assert conn.execute(text, {"start": date(2026, 1, 1), "end": date(2026, 12, 31)}).fetchall() == []
