"""rpu.ops: the mail telling operations that a run failed, and how it travels — through the outbox while the
regional database answers, straight to SMTP when it does not (the DAG-level notifier and the deadline callback:
tests/dags/test_send_dags.py)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from support.airflow_env import scratch_airflow_home

scratch_airflow_home()

from rpu import ops, outbox, store  # noqa: E402

OPS = "exploitation@demo.invalid"


def test_safe_error_quotes_only_this_packages_own_errors():
    assert ops.safe_error(None) is None
    assert ops.safe_error(ValueError("CP 75012 de M. Dupont")) == "ValueError (détail dans le journal de la tâche)"
    err = outbox.MailNotDelivered("1 mail(s) kept pending")
    assert ops.safe_error(err) == "MailNotDelivered: 1 mail(s) kept pending"
    assert len(ops.safe_error(outbox.MailNotDelivered("x" * 2000))) == 500


@pytest.mark.parametrize("dag,what", [("intake", "boîtes SFTP"), ("send_invs", "registre des envois"),
                                      ("export_ars", "registre des envois"), ("send_atih", "registre des envois"),
                                      ("watch", "veille du lendemain"), ("reprise", "récapitulatif de la reprise")])
def test_failure_mail_says_what_to_do_for_each_kind_of_dag(region, dag, what):
    subject, text, html = ops.failure_mail(region, dag_id=f"demo_{dag}", run_id="r1", logical_date=None,
                                           reason="task_failure", task="t")
    assert what in text and what in html
    assert subject == f"[RPU demo] ÉCHEC demo_{dag} — tâche t (r1)"


def test_failure_mail_shows_the_logical_date_in_the_regions_time_and_labels_the_reason(region):
    utc = datetime(2026, 7, 1, 4, 30, tzinfo=timezone.utc)
    for logical_date in (utc, "2026-07-01T04:30:00Z"):
        subject, text, _ = ops.failure_mail(region, dag_id="demo_watch", run_id=None, logical_date=logical_date,
                                            reason="timed_out", task="check", map_index=2, try_number=3,
                                            error="boom")
        assert subject == "[RPU demo] ÉCHEC demo_watch — tâche check (01/07/2026 06:30 (CEST))"
        assert "durée maximale de l'exécution dépassée" in text and "tentative 3" in text and "(instance 2)" in text
        assert "Exécution     : ?" in text and "Erreur        : boom" in text
    _, text, _ = ops.failure_mail(region, dag_id="demo_watch", run_id="r", logical_date=None, reason="odd_reason")
    assert "Motif         : odd_reason" in text


def test_tell_goes_through_the_outbox_when_the_database_answers(db, region, smtp):
    ops.tell_failure(region, db_url=db, dag_id="demo_intake", run_id="r1", logical_date=None, reason="task_failure")
    [m] = smtp.wait_for(1)
    assert m.rcpt_tos == [OPS] and "ÉCHEC demo_intake" in m.subject
    with store.connection(db) as conn:
        assert conn.execute("SELECT template, state, delivered FROM mail_outbox").fetchall() == [
            ("dag_failed", "done", [OPS])]


def test_tell_keeps_the_mail_in_the_outbox_while_smtp_is_down(db, region, smtp, monkeypatch):
    from rpu_dev.localservices import free_port

    monkeypatch.setenv(f"AIRFLOW_CONN_{region.smtp_conn_id.upper()}",
                       smtp.airflow_conn_json().replace(f'"port": {smtp.port}', f'"port": {free_port()}'))
    ops.tell(region, "dag_failed", "S", "t", "h", db_url=db)          # does not raise: kept for later
    with store.connection(db) as conn:
        assert [(m["subject"], m["recipients"]) for m in outbox.pending(conn, region)] == [("S", [OPS])]


def test_tell_mails_directly_when_the_database_is_down(pg_server, region, smtp):
    from rpu_dev.localservices import free_port

    down = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    ops.tell(region, "dag_failed", "Base en panne", "t", "h", db_url=down)
    [m] = smtp.wait_for(1)
    assert (m.rcpt_tos, m.subject) == ([OPS], "Base en panne")


def test_tell_without_an_operations_address_only_logs(region, smtp, caplog):
    ops.tell(dataclasses.replace(region, ops_emails=()), "dag_failed", "Sujet", "t", "h",
             db_url="postgresql://nobody@127.0.0.1:1/nothing")
    assert "no operations address" in caplog.text and "Sujet" in caplog.text
    assert smtp.messages == []
