"""rpu.sends: a slot prepared once into the outbox, recorded in the send ledger and uploaded atomically to the
suite's SFTP server; a failed upload is recorded and its retry sends that very file (the DAGs: test_send_dags.py)."""
from __future__ import annotations

import dataclasses
import json
import stat
from datetime import date

import paramiko
import pytest

from rpu import intake, sends
from rpu.exports import FileSpec
from support.rpu_xml import rpu_file, visit
from support.sftp_session import Account

ETAB = "990000127"
SPEC = FileSpec("invs", "daily", ETAB, 0, date(2026, 10, 26), date(2026, 11, 1), "RPU_990000127_test.xml")


@pytest.fixture
def env(db, region, tmp_path, sftp_server):
    """(region with a private outbox, database holding 3 visits of ETAB, SFTP account of the recipient)."""
    region = dataclasses.replace(region, outbox_dir=tmp_path / "outbox")
    path = tmp_path / "in.xml"
    path.write_bytes(rpu_file([visit(), visit(), visit(ENTREE="30/10/2026 08:00", SORTIE="30/10/2026 09:00")]))
    assert intake.ingest_path(region, db, path, sender=ETAB)["status"] == "accepted"
    account = Account(sftp_server, tmp_path / "invs")
    yield region, db, account
    account.remove()


def test_outbox_path_is_per_recipient_and_run_with_a_safe_run_id(region):
    p = sends.outbox_path(region, SPEC, "manual__2026-11-02T03:00:00+00:00/../x")
    assert p.relative_to(region.outbox_dir).parts == ("invs", "manual__2026-11-02T03_00_00_00_00_.._x",
                                                      SPEC.file_name)


def test_send_prepares_uploads_and_records_the_slot(env):
    region, db, account = env
    out = sends.send(region, SPEC, "run1", db, account.open)
    assert (out["status"], out["visits"], out["file_name"], out["attempts"]) == ("sent", 3, SPEC.file_name, 1)
    uploaded = account.root / SPEC.file_name
    assert uploaded.read_bytes().count(b"<PATIENT>") == 3
    local = sends.outbox_path(region, SPEC, "run1")
    assert uploaded.read_bytes() == local.read_bytes() and out["sha256"] == sends.exports.sha256_file(local)
    assert stat.S_IMODE(local.stat().st_mode) == 0o600 and stat.S_IMODE(local.parent.stat().st_mode) == 0o700
    [row] = sends.ledger(db, recipient="invs")
    assert (row["status"], row["run_id"], row["visits"], row["error"]) == ("sent", "run1", 3, None)
    assert sends.ledger(db, recipient="ars") == [] and sends.ledger(db, etab="990000101") == []


def test_a_retry_of_the_slot_sends_the_same_file_and_a_new_run_builds_a_new_one(env):
    region, db, account = env
    first = sends.send(region, SPEC, "run1", db, account.open)
    again = sends.send(region, SPEC, "run1", db, account.open)
    assert (again["sha256"], again["extract"]) == (first["sha256"], first["extract"])
    assert len(sends.ledger(db)) == 1
    with sends.store.connection(db) as conn:
        later = sends.prepare(conn, region, SPEC, "run2")
    assert (later["run_id"], later["status"]) == ("run2", "prepared")
    assert later["local_path"] != str(sends.outbox_path(region, SPEC, "run1"))
    assert [r["run_id"] for r in sends.ledger(db)] == ["run2", "run1"]


def test_a_failed_upload_is_recorded_and_its_retry_sends_the_prepared_file(env, tmp_path):
    region, db, account = env
    with pytest.raises(paramiko.AuthenticationException):   # the server refuses the login: nothing is uploaded
        sends.send(region, SPEC, "run1", db, lambda: account.open(password="wrong"))
    [row] = sends.ledger(db)
    assert row["status"] == "failed" and "Authentication" in row["error"]
    assert not (account.root / SPEC.file_name).exists()
    out = sends.send(region, SPEC, "run1", db, account.open)
    assert (out["status"], out["sha256"], out["attempts"]) == ("sent", row["sha256"], 2)


def test_a_lost_or_altered_local_file_is_prepared_again(env):
    region, db, account = env
    with sends.store.connection(db) as conn:
        first = sends.prepare(conn, region, SPEC, "run1")
        assert sends.prepare(conn, region, SPEC, "run1")["prepared_at"] == first["prepared_at"]   # kept
        sends.outbox_path(region, SPEC, "run1").write_bytes(b"tampered")
        again = sends.prepare(conn, region, SPEC, "run1")
    assert again["id"] == first["id"] and again["prepared_at"] > first["prepared_at"]
    assert sends.outbox_path(region, SPEC, "run1").read_bytes().count(b"<PATIENT>") == 3


def test_a_manifest_travels_with_its_file(env):
    region, db, account = env
    spec = dataclasses.replace(SPEC, manifest=True)
    out = sends.send(region, spec, "run1", db, account.open)
    doc = json.loads((account.root / (SPEC.file_name + ".manifest.json")).read_bytes())
    assert (doc["visits"], doc["sha256"], doc["finess"], doc["file"]) == (3, out["sha256"], ETAB, SPEC.file_name)
