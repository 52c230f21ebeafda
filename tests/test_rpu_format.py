"""rpu.rpu_format: the date readers and writers, codes and ages every check relies on."""
from __future__ import annotations

from datetime import date, datetime

import pytest

from rpu import rpu_format as F


@pytest.mark.parametrize("text,expected", [
    ("01/02/1980", date(1980, 2, 1)), ("29/02/2024", date(2024, 2, 29)),
    ("29/02/2026", None), ("31/04/2026", None), ("1/2/1980", None), ("01-02-1980", None), ("1980-02-01", None),
    ("01/02/80", None), ("", None), (None, None), ("ab/cd/efgh", None),
])
def test_parse_date(text, expected):
    assert F.parse_date(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("01/11/2026 10:12", datetime(2026, 11, 1, 10, 12)),
    ("01/11/2026 10:12:59", datetime(2026, 11, 1, 10, 12, 59)),
    ("01/11/2026", datetime(2026, 11, 1)),                      # a date alone: midnight
    ("01/11/2026 24:00", None), ("01/11/2026 10h12", None), ("01/11/2026T10:12", None),
    ("01/11/2026 10:12:5", None), ("2026-11-01 10:12", None), ("", None), (None, None),
])
def test_parse_datetime(text, expected):
    assert F.parse_datetime(text) == expected


def test_format_round_trips_and_empty():
    dt = datetime(2026, 3, 1, 7, 5, 9)
    assert F.format_datetime(dt) == "01/03/2026 07:05"
    assert F.format_datetime(dt, seconds=True) == "01/03/2026 07:05:09"
    assert F.parse_datetime(F.format_datetime(dt, seconds=True)) == dt
    assert F.parse_date(F.format_date(dt.date())) == dt.date()
    assert F.format_date(None) == "" and F.format_datetime(None) == ""


@pytest.mark.parametrize("birth,at,age", [
    (date(1980, 2, 1), date(2026, 1, 31), 45), (date(1980, 2, 1), date(2026, 2, 1), 46),
    (date(2024, 2, 29), date(2025, 2, 28), 0), (date(2024, 2, 29), date(2025, 3, 1), 1),
    (date(2026, 5, 1), date(2026, 5, 1), 0),
])
def test_age_years_counts_whole_years(birth, at, age):
    assert F.age_years(birth, at) == age


def test_codes_are_normalised_then_matched_whole():
    assert F.normalise_code(" r07.4 ") == "R074"
    assert F.cim10(F.normalise_code("i10")) and F.cim10("S0260+1")
    assert not F.cim10("R07.4") and not F.cim10("7R04") and not F.cim10("R0")
    assert F.ccam("DEQP003") and F.ccam("DEQP003-01") and not F.ccam("DEQ003")
    assert F.postal_code("2A004") and F.postal_code("97411") and not F.postal_code("7501") \
        and not F.postal_code("750123")


def test_coherence_tables_cover_every_mode():
    assert set(F.PROVENANCE_BY_MODE_ENTREE) == set(F.MODE_ENTREE)
    assert set(F.DESTINATION_BY_MODE_SORTIE) | {"9"} == set(F.MODE_SORTIE)   # 9 (décès): no destination
    assert set(F.ORIENT_BY_MODE_SORTIE) | {"9"} == set(F.MODE_SORTIE)
    assert not set(F.ORIENT_HOSPITAL) & set(F.ORIENT_HOME)
