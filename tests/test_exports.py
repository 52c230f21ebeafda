"""The writer of RPU files (rpu.exports._copy_visits) on a real PostgreSQL's COPY output."""
from __future__ import annotations

import io

import pytest
from lxml import etree

from rpu import exports, store

ITEMS = ("A", "B", "C", "D", "LISTE_DA")
TRICKY = ["A&B <x> y", "back\\slash", "tab\there", "line\nbreak", "cr\rhere", "é ü ß", "", None, "plain"]


def _lines(db: str, rows: list[tuple]) -> tuple[int, bytes]:
    """Write `rows` (one value per item; the last a text[] rendered by rpu_xml_items) as the export does."""
    values = ", ".join(f"(%(r{i}_0)s::text, %(r{i}_1)s::text, %(r{i}_2)s::text, %(r{i}_3)s::text, "
                       f"%(r{i}_4)s::text[], {i})" for i in range(len(rows)))
    query = (f"SELECT a, b, c, d, rpu_xml_items('DA', da) FROM (VALUES {values}) AS t (a, b, c, d, da, n) "
             "ORDER BY n")
    params = {f"r{i}_{j}": v for i, row in enumerate(rows) for j, v in enumerate(row)}
    out = io.BytesIO()
    with store.connection(db) as conn:
        n, _ = exports._copy_visits(conn, query, params, ITEMS, out)
    return n, out.getvalue()


@pytest.mark.parametrize("value", TRICKY)
def test_every_value_comes_back_as_it_was_stored(db, value):
    """Whatever a value holds, the line parses back to it, in its item, and a file keeps one visit per line."""
    rows = [(value, "plain", value, None, [value or "X", "J069"]), ("1", "2", "3", "4", [])]
    n, data = _lines(db, rows)
    assert n == len(rows)
    lines = data.splitlines()
    assert len(lines) == len(rows)
    patients = [etree.fromstring(line) for line in lines]
    for patient, row in zip(patients, rows):
        assert [c.tag for c in patient] == list(ITEMS)
        assert [patient.findtext(i) for i in ITEMS[:4]] == [v or "" for v in row[:4]]
        assert [c.text for c in patient.find("LISTE_DA")] == row[4]


def test_plain_rows_and_rows_needing_care_give_the_same_lines(db):
    """The fast path (split on tabs) and the careful one (unescape COPY, escape XML) agree on plain values."""
    plain = ("75001", "PARIS", "01/02/2003", "M", ["J069", "E119"])
    _, fast = _lines(db, [plain])
    careful = exports._careful_values(fast_row := b"\t".join(
        v.encode() for v in plain[:4]) + b"\t\x01DA\x02J069\x01/DA\x02\x01DA\x02E119\x01/DA\x02")
    assert (exports._patient_template(ITEMS) % careful).translate(exports._LIST_BRACKETS) == fast
    assert tuple(fast_row.split(b"\t")) == careful


def test_atih_items_replace_the_identifying_ones():
    from rpu import rpu_format as F

    assert "COMMUNE" not in exports.ATIH_ITEMS and "NAISSANCE" not in exports.ATIH_ITEMS
    assert "CP" not in exports.ATIH_ITEMS
    assert len(exports.ATIH_ITEMS) == len(F.ITEMS) - 1
    assert exports.ATIH_ITEMS[:2] == ("CODE_GEO", "AGE")
