"""rpu.mail: the French filters of the templates, the message built, and a send through Airflow's SMTP hook to
the suite's SMTP sink (rendering itself: tests/dags/test_reprise_dag.py)."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from support.airflow_env import scratch_airflow_home

scratch_airflow_home()

from rpu import mail  # noqa: E402

FROM = "rpu@ors.example"


@pytest.fixture
def smtp(smtp_sink, monkeypatch):
    """The SMTP sink as the Airflow connection `rpu_test_mail` (sender FROM), emptied."""
    smtp_sink.clear()
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_MAIL", smtp_sink.airflow_conn_json(from_email=FROM))
    yield smtp_sink
    smtp_sink.clear()


@pytest.mark.parametrize("value,kw,expected", [
    (date(2026, 3, 1), {}, "01/03/2026"), ("2026-03-01", {}, "01/03/2026"),
    (datetime(2026, 3, 1, 7, 5), {}, "01/03/2026"), (datetime(2026, 3, 1, 7, 5), {"with_time": True}, "01/03/2026 07:05"),
    (datetime(2026, 3, 1, 7, 5, tzinfo=ZoneInfo("Europe/Paris")), {"with_time": True}, "01/03/2026 07:05 (CET)"),
    ("2026-03-01T07:05:00", {"with_time": True}, "01/03/2026 07:05"),
    ("pas une date", {}, "pas une date"), (None, {}, ""), ("", {}, ""),
])
def test_date_fr(value, kw, expected):
    assert mail.date_fr(value, **kw) == expected


def test_number_fr_and_plural():
    assert mail.number_fr(1234567) == "1\u00a0234\u00a0567"
    assert mail.number_fr(12) == "12" and mail.number_fr(None) == "" and mail.number_fr(True) == "True"
    assert mail.number_fr(1.5) == "1.5"          # not an integer: as is
    assert [mail.plural(n, "fichier") for n in (0, 1, 2, None)] == ["fichier", "fichier", "fichiers", "fichier"]
    assert mail.plural(3, "journal", "journaux") == "journaux"


def test_templates_need_all_three_parts(tmp_path):
    for name, parts in (("full", mail.PARTS), ("no_html", ("subject", "txt"))):
        for part in parts:
            (tmp_path / f"{name}.{part}.j2").write_text("x", encoding="utf-8")
    assert mail.templates(tmp_path) == ["full"]
    assert "dag_failed" in mail.templates() and "mail_refused" in mail.templates()


def test_build_message_is_text_then_html_from_the_sender():
    msg = mail.build_message(FROM, ["a@x.example", "b@x.example"], "Sujet é", "texte é", "<p>html é</p>")
    assert (msg["From"], msg["To"], msg["Subject"]) == (FROM, "a@x.example, b@x.example", "Sujet é")
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content() == "texte é\n"
    assert msg["Message-ID"].endswith("@ors.example>")


def test_send_delivers_text_and_html_to_every_recipient(smtp):
    refused = mail.send("rpu_test_mail", ["ars@ars.example", "", "ops@ors.example"], "Bilan", "12 fichiers",
                        "<p>12 fichiers</p>")
    assert refused == {}
    [got] = smtp.wait_for(1)
    assert got.mail_from == FROM and got.rcpt_tos == ["ars@ars.example", "ops@ors.example"]
    assert got.subject == "Bilan" and got.body_text() == "12 fichiers\n"
    assert got.message.get_body(("html",)).get_content() == "<p>12 fichiers</p>\n"


def test_send_returns_the_refused_addresses_with_their_code(smtp):
    smtp.refuse("gone@ars.example", 550, "5.1.1 No such user")
    smtp.refuse("full@ars.example", 452, "4.2.2 Mailbox full")
    refused = mail.send("rpu_test_mail", ["ok@ars.example", "gone@ars.example", "full@ars.example"], "S", "t", "h")
    assert refused == {"gone@ars.example": (550, "5.1.1 No such user"), "full@ars.example": (452, "4.2.2 Mailbox full")}
    assert [m.rcpt_tos for m in smtp.wait_for(1)] == [["ok@ars.example"]]
    smtp.refuse("ok@ars.example", 550, "5.1.1 No such user")       # every address refused: nothing sent
    assert set(mail.send("rpu_test_mail", ["ok@ars.example"], "S", "t", "h")) == {"ok@ars.example"}
    assert len(smtp.messages) == 1


def test_send_without_recipient_or_sender_is_an_error(smtp, monkeypatch):
    with pytest.raises(ValueError, match="no recipient"):
        mail.send("rpu_test_mail", ["", None], "S", "t", "h")
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_MAIL", smtp.airflow_conn_json(from_email=""))
    with pytest.raises(ValueError, match="from_email"):
        mail.send("rpu_test_mail", ["a@x.example"], "S", "t", "h")
    assert smtp.messages == []
