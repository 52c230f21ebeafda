"""The `<region>_watch` DAG end to end with dag.test(): files loaded for real into PostgreSQL and dated as if
received on past days, the alert history, and the mails captured by a real SMTP server (aiosmtpd) — recipients,
subject, content, and no patient data."""
from __future__ import annotations

from datetime import date, time, timedelta

import pendulum
import pytest

from support.regions import write_region
from support.seeding import PATIENT_TRACES, Seeder, usual

GOOD = "990000127"        # CH de Valbourg: active, has a technical contact
OTHER = "990000135"       # CH de Saint-Aurèle: active, no contact
SHADOW = "990000200"      # Clinique des Tilleuls: shadow
ARS = ["veille-dag@ars.example.org", "astreinte-dag@ars.example.org"]
CONTACT = "dsi-dag@valbourg.example.org"
D = date(2026, 6, 16)     # Tuesday: the run of 06:00 that morning watches the files received since 06:00 on the 15th
ESTABLISHMENTS = [
    {"finess": GOOD, "name": "CH de Valbourg", "status": "active", "contact": CONTACT},
    {"finess": OTHER, "name": "CH de Saint-Aurèle", "status": "active"},
    {"finess": SHADOW, "name": "Clinique des Tilleuls", "status": "shadow"},
]


def _fr(d: date) -> str:
    return f"{d:%d/%m/%Y}"


class WatchEnv:
    def __init__(self, base, smtp, seed):
        self.base, self.smtp, self.seed = base, smtp, seed

    def __getattr__(self, name):
        return getattr(self.base, name)

    def run(self, day: date):
        """The scheduled run of `day` (logical date = the cut-off, 06:00 Paris)."""
        dag = self.base.dag("demo_watch")
        assert dag is not None
        run = dag.test(logical_date=pendulum.datetime(day.year, day.month, day.day, 6, 0, tz="Europe/Paris"))
        assert run.state == "success", run.state
        return run

    def mails(self, to: str | None = None):
        mine = set(ARS) | {CONTACT}
        return [m for m in self.smtp.messages if set(m.rcpt_tos) & mine and (to is None or to in m.rcpt_tos)]

    def alerts(self):
        return self.sql("SELECT kind, etab, key, state, notified_state, notifications, pending_notice FROM alert "
                        "ORDER BY id")


@pytest.fixture
def watch_env(intake_env, smtp_sink, tmp_path, monkeypatch) -> WatchEnv:
    env = intake_env
    write_region(env.region_dir, alerts={"ars": ARS}, establishments=ESTABLISHMENTS)
    region = env.region()
    monkeypatch.setenv(f"AIRFLOW_CONN_{region.smtp_conn_id.upper()}", smtp_sink.airflow_conn_json())
    smtp_sink.clear()
    return WatchEnv(env, smtp_sink, Seeder(region, env.db_url, tmp_path))


def _parts(m) -> tuple[str, str]:
    return m.message.get_body(("plain",)).get_content(), m.message.get_body(("html",)).get_content()


def _subject(m) -> str:
    """The subject as sent (a long non-ASCII subject is folded into encoded words: spaces may double on decoding)."""
    return " ".join(m.subject.split())


def _check_mail(m, to: list[str]) -> tuple[str, str]:
    """Recipients, multipart text + HTML, no patient data; returns the text and HTML parts."""
    assert sorted(m.rcpt_tos) == sorted(to)
    assert m.message.get_content_type() == "multipart/alternative"
    text, html = _parts(m)
    for trace in PATIENT_TRACES:
        assert trace not in m.subject and trace not in text and trace not in html, trace
    return text, html


def test_dag_shape(watch_env):
    dag = watch_env.dag("demo_watch")
    assert {t.task_id for t in dag.tasks} == {"check", "notify"}
    assert dag.timetable.expression == "0 6 * * *" and set(dag.tags) == {"demo", "rpu", "watch"}
    assert "When it fails" in dag.doc_md and ARS[0] in dag.doc_md
    write_region(watch_env.region_dir, alerts={"ars": ARS}, establishments=ESTABLISHMENTS, watch={"cutoff": "07:45"})
    assert watch_env.dag("demo_watch").timetable.expression == "45 7 * * *"


def test_no_alert_when_all_is_well_and_a_digest_when_asked(watch_env):
    env = watch_env
    for etab in (GOOD, OTHER):
        env.seed.normal(etab, D - timedelta(days=3), D)
    env.run(D)
    assert env.mails() == [] and env.alerts() == []
    # the region asks for a daily digest: one mail to the ARS saying so
    write_region(env.region_dir, alerts={"ars": ARS}, establishments=ESTABLISHMENTS, watch={"daily_digest": True})
    env.run(D)
    [m] = env.mails()
    text, html = _check_mail(m, ARS)
    assert _subject(m) == f"[RPU demo] Veille du {_fr(D)} : rien de nouveau"
    assert "Rien de nouveau à signaler (récapitulatif quotidien)" in text and "Rien de nouveau" in html
    assert env.alerts() == []


def test_a_missing_day_is_mailed_once_to_the_ars_and_the_contact(watch_env):
    env = watch_env
    env.seed.normal(GOOD, D - timedelta(days=3), D - timedelta(days=1))      # nothing this morning
    env.seed.normal(OTHER, D - timedelta(days=3), D + timedelta(days=1))
    env.run(D)
    [ars] = env.mails(ARS[0])
    text, html = _check_mail(ars, ARS)
    assert _subject(ars) == f"[RPU demo] Veille du {_fr(D)} : 1 absence de transmission"
    line = (f"CH de Valbourg (FINESS {GOOD}) : 1 jour sans transmission (depuis le {_fr(D)}), dernier fichier "
            f"accepté reçu le {_fr(D - timedelta(days=1))} à 03:00")
    assert line in text
    assert "CH de Valbourg" in html and GOOD in html and f"au plus tard le {_fr(D + timedelta(days=6))}" in html
    assert OTHER not in text                                             # OTHER transmitted
    [notice] = env.mails(CONTACT)
    text, html = _check_mail(notice, [CONTACT])
    assert _subject(notice) == f"[RPU demo] CH de Valbourg ({GOOD}) : aucun fichier RPU reçu depuis 1 jour"
    assert f"depuis le {_fr(D)} (1 jour sans transmission)" in text and "reprise" not in _subject(notice)
    assert env.alerts() == [("missing", GOOD, D.isoformat(), "open", "new", 1, None)]

    # no repeated alert: the same run again, and the next day with the gap still open
    env.smtp.clear()
    env.run(D)
    env.run(D + timedelta(days=1))
    assert env.mails() == []
    assert env.alerts() == [("missing", GOOD, D.isoformat(), "open", "new", 1, None)]


def test_an_eight_day_gap_needs_a_reprise(watch_env):
    env = watch_env
    env.seed.normal(GOOD, D - timedelta(days=10), D - timedelta(days=8))    # last file received on D-8
    env.seed.normal(OTHER, D - timedelta(days=10), D)
    env.run(D)
    [ars] = env.mails(ARS[0])
    text, _ = _check_mail(ars, ARS)
    assert _subject(ars) == f"[RPU demo] Veille du {_fr(D)} : 1 reprise nécessaire"
    assert "REPRISE NÉCESSAIRE (1) — au moins 8 jours sans transmission" in text
    assert (f"CH de Valbourg (FINESS {GOOD}) : 8 jours sans transmission (depuis le {_fr(D - timedelta(days=7))}), "
            f"dernier fichier accepté reçu le {_fr(D - timedelta(days=8))} à 03:00") in text
    assert f"les passages à partir du {_fr(D - timedelta(days=8))} (date d'entrée)" in text
    [notice] = env.mails(CONTACT)
    text, _ = _check_mail(notice, [CONTACT])
    assert _subject(notice) == (f"[RPU demo] CH de Valbourg ({GOOD}) : aucun fichier RPU reçu depuis 8 jours — "
                                "reprise nécessaire")
    assert "l'ARS demandera une reprise" in text
    assert env.alerts() == [("missing", GOOD, (D - timedelta(days=7)).isoformat(), "open", "reprise", 1, None)]


def test_a_gap_reaching_eight_days_is_mailed_once_more_then_back_to_normal_with_the_period(watch_env):
    """Day 7 is still catchable: a file received later that day covers the day before the gap — the date the
    mail gives ("au plus tard"). The reprise is told on day 8, once."""
    env = watch_env
    gap = D - timedelta(days=7)                                              # first day without a file
    env.seed.normal(GOOD, D - timedelta(days=10), gap - timedelta(days=1))  # last file received on D-8
    env.seed.normal(OTHER, D - timedelta(days=10), D + timedelta(days=1))
    env.run(D - timedelta(days=1))                                          # 7 days: told as missing, not reprise
    [m] = env.mails(ARS[0])
    text, _ = _check_mail(m, ARS)
    assert _subject(m) == f"[RPU demo] Veille du {_fr(D - timedelta(days=1))} : 1 absence de transmission"
    assert f"au plus tard le {_fr(D - timedelta(days=1))}, la fenêtre glissante" in text   # that very day
    env.smtp.clear()
    env.run(D)                                                               # 8 days: reprise needed, once
    [m] = env.mails(ARS[0])
    assert _subject(m) == f"[RPU demo] Veille du {_fr(D)} : 1 reprise nécessaire"
    assert len(env.mails(CONTACT)) == 1
    env.smtp.clear()

    env.seed.daily(GOOD, D + timedelta(days=1))                             # back: covers D-6 … D
    env.run(D + timedelta(days=1))
    [ars] = env.mails(ARS[0])
    text, html = _check_mail(ars, ARS)
    assert _subject(ars) == f"[RPU demo] Veille du {_fr(D + timedelta(days=1))} : 1 retour à la normale"
    # the last file before the gap covered up to gap-2; the file of D+1 covers D-6 …: D-8 and D-7 are missing
    lost = f"du {_fr(gap - timedelta(days=1))} au {_fr(gap)}"
    assert (f"CH de Valbourg (FINESS {GOOD}) : transmission reprise le {_fr(D + timedelta(days=1))} à 03:00 après "
            f"8 jours sans transmission (depuis le {_fr(gap)})") in text
    assert f"Reprise à demander (dates d'entrée) : {lost} — DAG « demo_reprise »" in text
    assert lost in html
    [notice] = env.mails(CONTACT)
    text, _ = _check_mail(notice, [CONTACT])
    assert _subject(notice) == f"[RPU demo] CH de Valbourg ({GOOD}) : transmission rétablie — reprise à prévoir"
    assert f"  - {lost}" in text
    assert env.alerts() == [("missing", GOOD, gap.isoformat(), "closed", "closed", 3, None)]
    env.smtp.clear()
    for etab in (GOOD, OTHER):
        env.seed.daily(etab, D + timedelta(days=2))
    env.run(D + timedelta(days=2))                                          # all well again: silence
    assert env.mails() == []


def test_an_abnormal_day_below_mu_minus_3_sigma(watch_env):
    env = watch_env
    low = D - timedelta(days=3)                               # Saturday: 2 visits, usually 10 to 12
    env.seed.normal(GOOD, D - timedelta(days=2), D + timedelta(days=1))
    env.seed.normal(OTHER, D - timedelta(days=2), D + timedelta(days=1), lambda day: 2 if day == low else usual(day))
    env.run(D)
    [ars] = env.mails()                                       # OTHER has no contact: the ARS only
    text, html = _check_mail(ars, ARS)
    assert _subject(ars) == f"[RPU demo] Veille du {_fr(D)} : 1 jour anormal"
    assert (f"CH de Saint-Aurèle (FINESS {OTHER}) : samedi {_fr(low)}, 2 passages ; seuil 8,2 (moyenne 11,0, "
            "écart-type 0,9, sur 8 samedis des 8 semaines précédentes)") in text
    assert "samedi " + _fr(low) in html and "8,2" in html
    assert env.alerts() == [("abnormal_day", OTHER, low.isoformat(), "open", "new", 1, None)]
    env.smtp.clear()
    env.run(D + timedelta(days=1))                            # still in the window, still low: not repeated
    assert env.mails() == []


def test_a_rejected_file_is_told_to_the_establishment_with_its_reasons(watch_env):
    env = watch_env
    env.seed.normal(GOOD, D - timedelta(days=2), D)
    env.seed.normal(OTHER, D - timedelta(days=2), D)
    bad = env.seed.daily(GOOD, D, ok=False, at=time(4, 30))
    env.run(D)
    [ars] = env.mails(ARS[0])
    text, _ = _check_mail(ars, ARS)
    assert _subject(ars) == f"[RPU demo] Veille du {_fr(D)} : 1 fichier rejeté"
    assert f"{bad['file']}, reçu le {_fr(D)} à 04:30" in text and "[EXTRACT_MISSING]" in text
    [notice] = env.mails(CONTACT)
    text, html = _check_mail(notice, [CONTACT])
    assert _subject(notice) == f"[RPU demo] CH de Valbourg ({GOOD}) : fichier RPU rejeté — {bad['file']}"
    assert ("[EXTRACT_MISSING] date d'extraction (EXTRACT) absente ou illisible, ligne 3 : date d'extraction "
            "EXTRACT absente") in text
    assert bad["file"] in html and "refusé en entier" in html
    env.smtp.clear()
    env.run(D)
    assert env.mails() == []


# --- issue 11: partial refusals by the mail server, failed runs told to operations ------------------------------

OPS = "exploitation-dag@example.org"


def _run_any(env, day: date):
    """A run of `day` whatever its outcome (env.run insists on success)."""
    return env.base.dag("demo_watch").test(
        logical_date=pendulum.datetime(day.year, day.month, day.day, 6, 0, tz="Europe/Paris"))


def _to(env, address: str):
    return [m for m in env.smtp.messages if address in m.rcpt_tos]


def test_an_address_refused_for_now_is_owed_the_mail_until_it_accepts_it(watch_env):
    """The server takes the summary for one ARS address and refuses the other for now (450): that is a failure
    for that address — the run fails (operations are told), the mail stays owed to it alone, and the next run
    delivers it there without sending it twice to the address that had it."""
    env = watch_env
    write_region(env.region_dir, alerts={"ars": ARS, "ops": [OPS]}, establishments=ESTABLISHMENTS)
    env.seed.normal(GOOD, D - timedelta(days=3), D - timedelta(days=1))      # GOOD: nothing this morning
    env.seed.normal(OTHER, D - timedelta(days=3), D + timedelta(days=1))
    env.smtp.refuse(ARS[1], 450, "4.2.2 Mailbox full")
    run = _run_any(env, D)
    assert run.state == "failed"
    assert [_subject(m) for m in _to(env, ARS[0])] == [f"[RPU demo] Veille du {_fr(D)} : 1 absence de transmission"]
    assert _to(env, ARS[1]) == [] and len(_to(env, CONTACT)) == 1
    [ops] = _to(env, OPS)                                                    # the failed run, in French
    text, _ = _check_mail(ops, [OPS])
    assert _subject(ops).startswith("[RPU demo] ÉCHEC demo_watch — tâche notify")
    assert "nouvelles tentatives épuisées" in text and "partent à la relance de la tâche" in text
    env.smtp.accept(ARS[1])
    env.run(D + timedelta(days=1))                                           # the next day: nothing new to tell
    [owed] = _to(env, ARS[1])
    assert _subject(owed) == f"[RPU demo] Veille du {_fr(D)} : 1 absence de transmission"
    assert len(_to(env, ARS[0])) == 1 and len(_to(env, CONTACT)) == 1        # not twice
    assert env.sql("SELECT count(*) FROM mail_outbox WHERE state = 'pending'") == [(0,)]


def test_an_address_refused_for_good_is_told_to_operations_once_and_never_resent(watch_env):
    """The only ARS address is refused for good (550): the summary is not sent again every day (it used to stay
    pending forever), operations hear of the address once, and later summaries still go to the others."""
    env = watch_env
    write_region(env.region_dir, alerts={"ars": [ARS[1]], "ops": [OPS]}, establishments=ESTABLISHMENTS)
    env.seed.normal(GOOD, D - timedelta(days=3), D - timedelta(days=1))
    env.seed.normal(OTHER, D - timedelta(days=3), D)
    env.smtp.refuse(ARS[1], 550, "5.1.1 Unknown mailbox")
    env.run(D)                                                              # nothing owed: the run succeeds
    [ops] = _to(env, OPS)
    text, _ = _check_mail(ops, [OPS])
    assert _subject(ops) == "[RPU demo] 1 adresse refusée par le serveur de courriel"
    assert f"{ARS[1]} : 550 5.1.1 Unknown mailbox" in text and "signalé qu'une fois" in text
    env.run(D + timedelta(days=1))                                          # OTHER misses: a new summary
    env.run(D + timedelta(days=2))
    assert len(_to(env, OPS)) == 1 and _to(env, ARS[1]) == []
    assert env.sql("SELECT template, state, refused ? %s FROM mail_outbox WHERE template = 'watch_ars' ORDER BY id",
                   ARS[1]) == [("watch_ars", "done", True), ("watch_ars", "done", True)]
    assert env.sql("SELECT address, code, reported_at IS NOT NULL FROM mail_refusal") == [(ARS[1], 550, True)]
