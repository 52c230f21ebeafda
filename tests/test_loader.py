"""rpu.loader: one file checked and loaded in one transaction, called directly (through the intake:
tests/test_store.py)."""
from __future__ import annotations

import hashlib
from datetime import date

import pytest

from rpu import store
from rpu.loader import LoadOutcome, load_file, record_rejection
from rpu.problems import Problem
from support.rpu_xml import rpu_file, visit

ETAB = "990000127"


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path, dict(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _load(conn, region, tmp_path, name, data, sender=ETAB) -> LoadOutcome:
    path, meta = _write(tmp_path, name, data)
    return load_file(conn, path, region=region, sender=sender, **meta)


def _files(conn):
    return conn.execute("SELECT id, status, sender, duplicate_of FROM received_file ORDER BY id").fetchall()


@pytest.fixture
def conn(db):
    with store.connection(db) as c:
        yield c


GOOD = rpu_file([visit(), visit(ENTREE="31/10/2026 23:59", SORTIE="01/11/2026 02:00")], debut="31/10/2026",
                fin="01/11/2026")


def test_an_accepted_load_says_its_file_id_report_and_days(conn, region, tmp_path):
    out = _load(conn, region, tmp_path, "a.xml", GOOD)
    assert (out.status, out.duplicate_of, out.kept) == ("accepted", None, [])
    assert out.applied == [date(2026, 10, 31), date(2026, 11, 1)]
    assert out.report.accepted and out.report.etab == ETAB
    assert _files(conn) == [(out.file_id, "accepted", ETAB, None)]
    assert conn.execute("SELECT count(*) FROM visit WHERE file_id = %s", (out.file_id,)).fetchone() == (2,)


def test_a_rejected_content_is_recorded_then_judged_again_when_sent_again(conn, region, tmp_path):
    bad = rpu_file([visit()], extract="")
    first = _load(conn, region, tmp_path, "bad.xml", bad)
    assert first.status == "rejected" and [p.rule for p in first.report.errors] == ["EXTRACT_MISSING"]
    again = _load(conn, region, tmp_path, "bad_again.xml", bad)
    assert again.status == "rejected" and again.duplicate_of is None     # a rejected file is never an original
    assert conn.execute("SELECT count(*) FROM visit").fetchone() == (0,)


def test_a_load_by_hand_is_a_duplicate_of_what_its_establishment_sent(conn, region, tmp_path):
    """No sender (`rpu ingest`): the duplicate is looked up under the file's FINESS once it is read."""
    first = _load(conn, region, tmp_path, "a.xml", GOOD)
    by_hand = _load(conn, region, tmp_path, "c.xml", GOOD, sender=None)
    assert (by_hand.status, by_hand.duplicate_of, by_hand.report) == ("duplicate", first.file_id, None)
    assert [f[1:] for f in _files(conn)] == [("accepted", ETAB, None), ("duplicate", None, first.file_id)]


def test_record_rejection_stores_the_file_with_its_reason_and_no_visit(conn):
    fid = record_rejection(conn, Problem("NAME_TOO_LONG", "nom trop long"), name="x" * 10, sha256=None, size=0,
                           sender=ETAB, remote_path="/990000127/inbox/xxxx")
    row = conn.execute("SELECT status, sender, errors->0->>'rule', errors->0->>'message', remote_path "
                       "FROM received_file WHERE id = %s", (fid,)).fetchone()
    assert row == ("rejected", ETAB, "NAME_TOO_LONG", "nom trop long", "/990000127/inbox/xxxx")
    assert conn.info.transaction_status.name == "IDLE"       # committed, nothing left open


def test_progress_is_reported_while_checking(conn, region, tmp_path, monkeypatch):
    from rpu import checks

    monkeypatch.setattr(checks, "PROGRESS_EVERY", 2)
    seen = []
    data = rpu_file([visit() for _ in range(5)])
    path, meta = _write(tmp_path, "p.xml", data)
    load_file(conn, path, region=region, sender=ETAB, progress=seen.append, **meta)
    assert seen == [2, 2]
