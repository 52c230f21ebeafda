"""rpu.outbox: mails queued in PostgreSQL and delivered through the suite's SMTP sink (Airflow's SMTP hook): an
address that accepted is never sent the mail again, 4xx stays owed, 5xx is given up and told once to operations."""
from __future__ import annotations

import dataclasses

import pytest

from support.airflow_env import scratch_airflow_home

scratch_airflow_home()

from rpu import outbox, store  # noqa: E402

OPS = "exploitation@demo.invalid"


@pytest.fixture
def conn(db):
    with store.connection(db) as c:
        yield c


def _queue(conn, region, to, subject="Bilan", key=None):
    with conn.transaction():
        return outbox.queue(conn, region, "watch_ars", to, subject, "texte", "<p>html</p>", key=key)


def test_queue_drops_empty_and_repeated_addresses_and_a_key_queues_once(conn, region):
    first = _queue(conn, region, ["a@x.example", "", "a@x.example", "b@x.example"], key="run1/notify")
    assert first is not None
    assert _queue(conn, region, ["c@x.example"], key="run1/notify") is None          # the retry of the same task
    assert _queue(conn, region, ["c@x.example"], key="run2/notify") is not None
    assert [m["recipients"] for m in outbox.pending(conn, region)] == [["a@x.example", "b@x.example"],
                                                                       ["c@x.example"]]
    with pytest.raises(ValueError, match="no recipient"):
        _queue(conn, region, ["", None])


def test_flush_delivers_oldest_first_and_then_nothing_is_pending(conn, region, smtp):
    _queue(conn, region, ["a@x.example"], subject="premier")
    _queue(conn, region, ["b@x.example"], subject="second")
    done = outbox.flush(conn, region)
    assert [(d["subject"], d["to"]) for d in done] == [("premier", ["a@x.example"]), ("second", ["b@x.example"])]
    assert [m.subject for m in smtp.wait_for(2)] == ["premier", "second"]
    assert outbox.pending(conn, region) == [] and outbox.flush(conn, region) == []
    assert len(smtp.messages) == 2


def test_an_address_refused_for_now_stays_owed_and_the_others_are_not_sent_twice(conn, region, smtp):
    smtp.refuse("full@x.example", 452, "4.2.2 Mailbox full")
    _queue(conn, region, ["ok@x.example", "full@x.example"])
    with pytest.raises(outbox.MailNotDelivered, match="full@x.example"):
        outbox.flush(conn, region)
    [m] = outbox.pending(conn, region)
    assert m["delivered"] == ["ok@x.example"]
    smtp.accept("full@x.example")
    assert [d["to"] for d in outbox.flush(conn, region)] == [["full@x.example"]]
    assert [m.rcpt_tos for m in smtp.wait_for(2)] == [["ok@x.example"], ["full@x.example"]]
    assert outbox.pending(conn, region) == []


def test_a_server_down_keeps_everything_owed(conn, region, smtp, monkeypatch):
    from rpu_dev.localservices import free_port

    monkeypatch.setenv(f"AIRFLOW_CONN_{region.smtp_conn_id.upper()}",
                       smtp.airflow_conn_json().replace(f'"port": {smtp.port}', f'"port": {free_port()}'))
    _queue(conn, region, ["a@x.example"])
    with pytest.raises(outbox.MailNotDelivered, match="a@x.example"):
        outbox.flush(conn, region)
    assert [m["recipients"] for m in outbox.pending(conn, region)] == [["a@x.example"]]
    assert smtp.messages == []


def test_refused_for_good_is_given_up_and_told_to_operations_once(conn, region, smtp):
    smtp.refuse("gone@x.example", 550, "5.1.1 No such user")
    _queue(conn, region, ["gone@x.example", "ok@x.example"], subject="un")
    done = outbox.flush(conn, region)
    assert [(d["template"], d["to"]) for d in done] == [("watch_ars", ["ok@x.example"]),
                                                         (outbox.REFUSAL_TEMPLATE, [OPS])]
    told = [m for m in smtp.wait_for(2) if m.rcpt_tos == [OPS]]
    assert len(told) == 1 and "gone@x.example" in told[0].body_text()
    _queue(conn, region, ["gone@x.example", "ok@x.example"], subject="deux")      # refused again: not told again
    assert [d["template"] for d in outbox.flush(conn, region)] == ["watch_ars"]
    assert outbox.pending(conn, region) == []
    assert [m.rcpt_tos for m in smtp.messages].count([OPS]) == 1


def test_a_refused_operations_address_is_only_logged_not_looped(conn, region, smtp, caplog):
    quiet = dataclasses.replace(region, ops_emails=())
    smtp.refuse("gone@x.example", 550, "5.1.1 No such user")
    _queue(conn, quiet, ["gone@x.example"])
    assert outbox.flush(conn, quiet) == []
    assert "no operations address" in caplog.text
    smtp.refuse(OPS, 550, "5.1.1 No such user")
    _queue(conn, region, ["gone@x.example"], subject="autre")
    # the refusal mail to OPS is refused for good too: it is not itself reported (no loop)
    assert outbox.flush(conn, region) == []
    assert outbox.pending(conn, region) == [] and smtp.messages == []

