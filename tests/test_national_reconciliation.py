"""Automatic reconciliation of a region's ATIH sends (its send ledger) with what the Syrius platform received:
conforme, écart, refusé, non reçu, en attente; mailed once through the national outbox to a real SMTP sink."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from support.national_files import atih_file, receive
from rpu import cli
from rpu.config import get_region
from rpu.national import reconciliation, settings
from support.rpu_xml import rpu_file, visit

A, B, C = "990000127", "990000135", "990000143"


def sent(db, etab: str, name: str, data: bytes | None, visits: int, *, hours_ago: float = 1, sha: str | None = None):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("""INSERT INTO send_ledger (recipient, kind, etab, ordre, period_start, period_end, run_id,
                            file_name, sha256, size_bytes, visits, local_path, status, attempts, sent_at)
                        VALUES ('atih', 'cumulative', %s, 0, '2026-01-01', '2026-05-31', 'scheduled__t', %s, %s, 1, %s,
                                '/nonexistent', 'sent', 1, %s)""",
                     (etab, name, sha or hashlib.sha256(data).hexdigest(), visits,
                      datetime.now(timezone.utc) - timedelta(hours=hours_ago)))


@pytest.fixture
def case(tmp_path, db, national_db):
    """Five sends of May 2026, one of each outcome."""
    good = atih_file({1: 3, 5: 4}, finess=A)
    sent(db, A, "ok.xml", good, 7)
    receive(tmp_path, national_db, good, "ok.xml")
    mine, theirs = atih_file({1: 3, 5: 4}, finess=B), atih_file({1: 3, 5: 2}, finess=B)
    sent(db, B, "diff.xml", mine, 7)                      # ATIH got another content under that name: 5 RPU
    receive(tmp_path, national_db, theirs, "diff.xml")
    bad = rpu_file([visit(ENTREE="10/01/2026 10:00")], finess=C, debut="01/01/2026", fin="31/05/2026")
    sent(db, C, "ident.xml", bad, 1)
    receive(tmp_path, national_db, bad, "ident.xml")      # refused: not anonymised
    sent(db, A, "lost.xml", b"lost", 9, hours_ago=72)
    sent(db, B, "soon.xml", b"soon", 9, hours_ago=2)
    return db, national_db


def test_each_send_gets_its_status_and_the_month_its_worst(case, capsys):
    db, ndb = case
    assert cli.main(["report", "reconciliation", "--region", "demo", "--db", db, "--national-db", ndb,
                     "--year", "2026", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    got = {r["file_name"]: (r["status"], r["sent_visits"], r["received_rpu"]) for r in result["rows"]}
    assert got == {"ok.xml": ("conforme", 7, 7), "diff.xml": ("ecart", 7, 5), "ident.xml": ("refuse", 1, None),
                   "lost.xml": ("non_recu", 9, None), "soon.xml": ("en_attente", 9, None)}
    assert result["months"]["5"]["status"] == "ecart" and result["months"]["5"]["files"] == 5
    assert cli.main(["report", "reconciliation", "--region", "demo", "--db", db, "--national-db", ndb,
                     "--year", "2026"]) == 0
    text = capsys.readouterr().out
    assert "✓ reçu, conforme" in text and "≠ écart" in text and "∅ non reçu" in text
    assert "✗ refusé [NOT_ANONYMISED]" in text
    # another year: nothing sent
    assert cli.main(["report", "reconciliation", "--region", "demo", "--db", db, "--national-db", ndb,
                     "--year", "2025", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == []


def test_not_conforming_sends_are_mailed_once(case, smtp_sink, monkeypatch):
    db, ndb = case
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_sink.airflow_conn_json())
    smtp_sink.clear()
    national = dataclasses.replace(settings.National(), ops_emails=("ops@atih.test",))
    region = get_region("demo")
    for _ in range(2):
        with psycopg.connect(db, autocommit=True) as rc, psycopg.connect(ndb, autocommit=True) as nc:
            result = reconciliation.reconcile(rc, nc, national, region, 2026)
            told = reconciliation.tell(nc, national, region, result)
        assert len(told) == (3 if _ == 0 else 0)
    mails = [m for m in smtp_sink.messages if "rapprochement" in m.subject]
    assert len(mails) == 1, [m.subject for m in mails]
    mail = mails[0]
    assert sorted(mail.rcpt_tos) == sorted(["ops@atih.test", *region.ars_emails])
    assert "3 envois non conformes" in mail.subject
    body = mail.body_text()
    assert "diff.xml" in body and "lost.xml" in body and "ident.xml" in body and "ok.xml" not in body
    assert "soon.xml" not in body                         # not late yet: told when it is
    # the late one becomes "non reçu" later: told then, once
    later = datetime.now(timezone.utc) + timedelta(hours=48)
    with psycopg.connect(db, autocommit=True) as rc, psycopg.connect(ndb, autocommit=True) as nc:
        result = reconciliation.reconcile(rc, nc, national, region, 2026, now=later)
        assert [r["file_name"] for r in reconciliation.tell(nc, national, region, result)] == ["soon.xml"]
    assert len([m for m in smtp_sink.messages if "rapprochement" in m.subject]) == 2
