"""The national DAG `syrius_reception` with dag.test() on real services: a region's `demo_send_atih` uploads to
its account on a Syrius SFTP server, the national DAG receives from the whole server (rpu_syrius_sftp), records
into a national PostgreSQL database, reconciles with the region's send ledger and mails a real SMTP sink."""
from __future__ import annotations

import json
import uuid

import pendulum
import psycopg
import pytest
import yaml

from support.regions import pg_conn_json
from support.national_files import atih_visit
from rpu import intake
from rpu.national import schema
from support.rpu_xml import rpu_file, visit

A, B = "990000127", "990000135"
SEND_DAY = pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris")      # ATIH file 1 Jan – 30 Nov 2026
RECEIVE_AT = pendulum.datetime(2026, 12, 2, 6, 30, tz="Europe/Paris")


@pytest.fixture
def syrius(intake_env, sftp_server, smtp_sink, pg_server, monkeypatch, tmp_path):
    env = intake_env
    root = tmp_path / "syrius"
    region_user, syrius_user = f"demo{uuid.uuid4().hex[:6]}", f"syr{uuid.uuid4().hex[:6]}"
    env.drop_dir = sftp_server.add_user(region_user, "pw-region", root / "demo")   # the region's account
    sftp_server.add_user(syrius_user, "pw-syrius", root)                            # ATIH's view of every region
    monkeypatch.setenv("AIRFLOW_CONN_RPU_DEMO_SFTP_ATIH", sftp_server.airflow_conn_json(region_user, "pw-region"))
    monkeypatch.setenv("AIRFLOW_CONN_RPU_SYRIUS_SFTP", sftp_server.airflow_conn_json(syrius_user, "pw-syrius"))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_sink.airflow_conn_json())
    name = f"national_{uuid.uuid4().hex[:10]}"
    env.national_db = pg_server.create_database(name)
    schema.migrate(env.national_db)
    monkeypatch.setenv("AIRFLOW_CONN_RPU_NATIONAL_DB", pg_conn_json(env.national_db))
    conf = tmp_path / "national.yaml"
    conf.write_text(yaml.safe_dump({"reception": {"stable_seconds": 0}, "retries": 1, "retry_delay_minutes": 0,
                                    "sftp_connect_attempts": 1, "alerts": {"ops": ["syrius-ops@atih.test"]}}))
    monkeypatch.setenv("RPU_NATIONAL_CONFIG", str(conf))
    region = env.region()
    for etab, per_day in ((A, 3), (B, 2)):
        visits = [visit(ENTREE=f"{d:02d}/11/2026 {8 + i:02d}:15", SORTIE=f"{d:02d}/11/2026 {9 + i:02d}:40", CP="58110")
                  for d in range(4, 13) for i in range(per_day)]
        path = tmp_path / f"in_{etab}.xml"
        path.write_bytes(rpu_file(visits, finess=etab, debut="04/11/2026", fin="12/11/2026",
                                  extract="13/11/2026 02:00:00"))
        assert intake.ingest_path(region, env.db_url, path, sender=etab)["status"] == "accepted"
    smtp_sink.clear()
    try:
        yield env
    finally:
        pg_server.drop_database(name)


def national(env, sql, *params):
    with psycopg.connect(env.national_db) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_region_s_atih_send_is_received_counted_and_reconciled(syrius, smtp_sink):
    env = syrius
    assert env.dag("demo_send_atih").test(logical_date=SEND_DAY).state == "success"
    sent = sorted(p.name for p in env.drop_dir.iterdir() if p.is_file())
    assert sent == sorted([f"ATIH_RPU_{A}_0_20260101_20261130.xml", f"ATIH_RPU_{A}_0_20260101_20261130.xml"
                           ".manifest.json", f"ATIH_RPU_{B}_0_20260101_20261130.xml",
                           f"ATIH_RPU_{B}_0_20260101_20261130.xml.manifest.json"])
    run = env.dag("syrius_reception").test(logical_date=RECEIVE_AT)
    assert run.state == "success"
    # recorded, archived with its manifest, acknowledged
    got = national(env, "SELECT trim(finess), ordre, status, rpu, period_end FROM national_file ORDER BY finess")
    assert [(f, o, s, n, str(e)) for f, o, s, n, e in got] == [(A, 0, "accepted", 27, "2026-11-30"),
                                                                (B, 0, "accepted", 18, "2026-11-30")]
    assert not [p for p in env.drop_dir.iterdir() if p.is_file()]
    assert (env.drop_dir / "archive" / f"ATIH_RPU_{A}_0_20260101_20261130.xml.manifest.json").exists()
    ack = json.loads((env.drop_dir / "ack" / f"ATIH_RPU_{A}_0_20260101_20261130.xml.ack.json").read_text())
    assert ack["status"] == "accepted" and ack["rpu_per_month"] == {"2026-11": 27}
    # the national page: M11 holds both files, as the region sent them
    from rpu.national import report, reconciliation, settings

    with psycopg.connect(env.national_db) as nc, psycopg.connect(env.db_url) as rc:
        grid = report.grid(nc, 2026, [env.region()])
        result = reconciliation.reconcile(rc, nc, settings.load(), env.region(), 2026)
    m11 = next(r for r in grid["rows"] if r["month"] == 11)
    assert (m11["files"], m11["establishments"], m11["rpu"]) == (2, 2, 45)
    assert [r["status"] for r in result["rows"]] == ["conforme", "conforme"]
    assert not [m for m in smtp_sink.messages if "ATIH Syrius" in m.subject]

    # a re-send (new run for the same date, after a correction) supersedes the first file of its FINESS_ordre
    path = env.data_dir / "fix.xml"
    path.write_bytes(rpu_file([visit(ENTREE="12/11/2026 20:00", SORTIE="12/11/2026 21:00", CP="58110")] * 4, finess=A,
                              debut="12/11/2026", fin="12/11/2026", extract="14/11/2026 02:00:00"))
    assert intake.ingest_path(env.region(), env.db_url, path, sender=A)["status"] == "accepted"
    assert env.dag("demo_send_atih").test(logical_date=SEND_DAY.add(hours=1)).state == "success"
    # … and a count mismatch (B's ledger says one more than its file) and a file never received
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(f"UPDATE send_ledger SET visits = visits + 1 WHERE etab = '{B}'")
        conn.execute("""INSERT INTO send_ledger (recipient, kind, etab, ordre, period_start, period_end, run_id,
                            file_name, sha256, size_bytes, visits, local_path, status, attempts, sent_at)
                        VALUES ('atih', 'cumulative', %s, 1, '2026-01-01', '2026-11-30', 'manual__x',
                                'ATIH_RPU_lost.xml', repeat('a', 64), 1, 5, '/nonexistent', 'sent', 1,
                                now() - interval '3 days')""", (A,))
    for minutes in (40, 50):          # twice: told once
        assert env.dag("syrius_reception").test(logical_date=RECEIVE_AT.add(minutes=minutes)).state == "success"
    rows = national(env, "SELECT trim(finess), rpu, superseded_by IS NOT NULL, status FROM national_file "
                         "WHERE finess = %s ORDER BY id", A)
    assert rows == [(A, 27, True, "accepted"), (A, 28, False, "accepted")]   # 12/11 replaced: 3 → 4 visits
    with psycopg.connect(env.national_db) as nc, psycopg.connect(env.db_url) as rc:
        result = reconciliation.reconcile(rc, nc, settings.load(), env.region(), 2026)
        grid = report.grid(nc, 2026, [env.region()])
    assert {r["file_name"]: r["status"] for r in result["rows"]} == {
        f"ATIH_RPU_{A}_0_20260101_20261130.xml": "conforme", f"ATIH_RPU_{B}_0_20260101_20261130.xml": "ecart",
        "ATIH_RPU_lost.xml": "non_recu"}
    assert next(r for r in grid["rows"] if r["month"] == 11)["rpu"] == 28 + 18
    mails = [m for m in smtp_sink.messages if "rapprochement" in m.subject]
    assert len(mails) == 1, [m.subject for m in mails]
    assert sorted(mails[0].rcpt_tos) == ["ars-veille@demo.invalid", "syrius-ops@atih.test"]
    body = mails[0].body_text()
    assert "ATIH_RPU_lost.xml" in body and f"ATIH_RPU_{B}_0" in body and "NON REÇU" in body and "ÉCART" in body


def test_a_non_anonymised_file_is_refused_deleted_and_the_region_told(syrius, smtp_sink):
    env = syrius
    visits = [atih_visit("10/01/2026")] * 2 + [visit(ENTREE="11/01/2026 10:00", SORTIE="11/01/2026 11:00")]
    (env.drop_dir / "ATIH_RPU_990000127_0_20260101_20260131.xml").write_bytes(
        rpu_file(visits, finess=A, debut="01/01/2026", fin="31/01/2026"))
    (env.drop_dir / "ATIH_RPU_990000127_0_20260101_20260131.xml.manifest.json").write_text("{}")
    (env.drop_dir / "link.xml").symlink_to("/etc/passwd")             # the intake's hostile-input rules
    assert env.dag("syrius_reception").test(logical_date=RECEIVE_AT).state == "success"
    assert sorted(national(env, "SELECT status, rule, finess, rpu FROM national_file")) == [
        ("rejected", "NOT_ANONYMISED", None, None), ("rejected", "NOT_A_FILE", None, None)]
    assert national(env, "SELECT count(*) FROM national_file_month") == [(0,)]
    # never stored: neither in the drop directory, nor archive/ nor rejected/; the symlink goes to rejected/
    left = sorted(str(p.relative_to(env.drop_dir)) for p in env.drop_dir.rglob("*") if not p.is_dir())
    assert left == sorted(["ack/ATIH_RPU_990000127_0_20260101_20260131.xml.ack.json",
                           "ack/ATIH_RPU_990000127_0_20260101_20260131.xml.ack.txt",
                           "ack/link.xml.ack.json", "ack/link.xml.ack.txt", "rejected/link.xml"])
    text = (env.drop_dir / "ack" / "ATIH_RPU_990000127_0_20260101_20260131.xml.ack.txt").read_text()
    assert "REFUSÉ" in text and "NOT_ANONYMISED" in text
    mails = [m for m in smtp_sink.messages if "fichier refusé" in m.subject]
    assert len(mails) == 2
    mine = next(m for m in mails if "NOT_ANONYMISED" in m.subject)
    assert sorted(mine.rcpt_tos) == ["exploitation@demo.invalid", "syrius-ops@atih.test"]
    assert "supprimé du dépôt sans" in mine.body_text().replace("\n", " ")
