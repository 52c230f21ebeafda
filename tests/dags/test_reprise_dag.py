"""The `<region>_reprise` DAG end to end with dag.test(run_conf=...): real PostgreSQL, real SFTP accounts for
InVS, ATIH and ARS, a real SMTP sink; plus unit tests of rpu.reprise.validate and rpu.mail.render."""
from __future__ import annotations

import copy
import dataclasses
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from support.dag_runs import run_form
from support.regions import write_region
from support.rpu_xml import rpu_file, visit

GOOD = "990000127"         # CH de Valbourg (active)
OTHER = "990000135"        # CH de Saint-Aurèle: its visits must not leak into GOOD's reprise
SHADOW = "990000200"       # Clinique des Tilleuls (shadow)
EJ = "990000010"           # legal entity of the two CHU sites
ARS = "ars@example.org"
# Patient data of the fixture visits: none of it may appear in the summary mail.
PATIENT = {"CP": "13790", "COMMUNE": "ROUSSET-LES-VIGNES", "NAISSANCE": "17/04/1961"}
PATIENT_TRACES = ("13790", "ROUSSET", "17/04/1961", "1961-04-17")


# --- dates relative to the real clock: the reprise refuses the future -------------------------------------

def _today_paris() -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Paris")).date()


def _month_start(d: date, back: int) -> date:
    y, m = d.year, d.month - back
    while m < 1:
        y, m = y - 1, m + 12
    return date(y, m, 1)


TODAY = _today_paris()
M2 = _month_start(TODAY, 2)                          # first day of the month before last
M1 = _month_start(TODAY, 1)                          # first day of last month
M1_END = _month_start(TODAY, 0) - timedelta(days=1)  # last day of last month
M2_END = M1 - timedelta(days=1)
BEFORE = M2 - timedelta(days=1)                      # just outside the period (in ATIH's cumul if same year)


def _fr(d: date) -> str:
    return f"{d:%d/%m/%Y}"


def _visits(day: date, n: int) -> list[dict]:
    return [visit(ENTREE=f"{_fr(day)} {8 + i:02d}:{10 + i:02d}", SORTIE=f"{_fr(day)} {15 + i % 5:02d}:00", **PATIENT)
            for i in range(n)]


GOOD_VISITS = {BEFORE: 1, M2 + timedelta(days=9): 2, M2 + timedelta(days=19): 1, M1 + timedelta(days=4): 3}
LAST = max(GOOD_VISITS)   # the files received end there: later days have no data, and no file declares them


# --- environment --------------------------------------------------------------------------------------------

class RepriseEnv:
    def __init__(self, base, roots: dict[str, Path], smtp_sink):
        self.base, self.roots, self.smtp = base, roots, smtp_sink

    def __getattr__(self, name):
        return getattr(self.base, name)

    def run(self, conf: dict):
        dag = self.base.dag("demo_reprise")
        assert dag is not None
        return run_form(dag, conf)

    def uploaded(self, recipient: str) -> list[str]:
        return sorted(p.name for p in self.roots[recipient].rglob("*") if p.is_file())

    def ledger(self):
        return self.sql("SELECT recipient, kind, etab, period_start, period_end, file_name, visits, status "
                        "FROM send_ledger ORDER BY recipient, period_start")

    def mails(self):
        return [m for m in self.smtp.messages if ARS in m.rcpt_tos]


@pytest.fixture
def reprise_env(intake_env, sftp_server, smtp_sink, tmp_path, monkeypatch) -> RepriseEnv:
    from rpu import intake

    env = intake_env
    # no atih.geo_table: the postal code table is loaded by hand (`rpu geo load`), as in production
    write_region(env.region_dir, alerts={"ars": [ARS]}, atih={})
    region = env.region()
    table = tmp_path / "pmsi_geo.csv"
    table.write_text("cp;code_geo\n13790;13G05\n75012;75112\n", encoding="utf-8")
    from rpu.cli import main

    assert main(["geo", "load", "--db", env.db_url, "--file", str(table)]) == 0
    roots = {}
    for name in ("invs", "atih", "ars"):
        user, password = f"{name}{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        roots[name] = sftp_server.add_user(user, password, tmp_path / f"remote_{name}")
        monkeypatch.setenv(f"AIRFLOW_CONN_{region.sends.recipients[name].conn_id.upper()}",
                           sftp_server.airflow_conn_json(user, password))
    monkeypatch.setenv(f"AIRFLOW_CONN_{region.smtp_conn_id.upper()}", smtp_sink.airflow_conn_json())
    smtp_sink.clear()

    last = max(GOOD_VISITS)
    good = [v for day, n in sorted(GOOD_VISITS.items()) for v in _visits(day, n)]
    other = _visits(M2 + timedelta(days=9), 4) + _visits(M1 + timedelta(days=4), 2)
    for finess, visits in ((GOOD, good), (OTHER, other)):
        path = tmp_path / f"RPU_{finess}.xml"
        path.write_bytes(rpu_file(visits, finess=finess, debut=_fr(BEFORE), fin=_fr(last),
                                  extract=f"{_fr(last + timedelta(days=1))} 03:00:00"))
        receipt = intake.ingest_path(region, env.db_url, path, sender=finess)
        assert receipt["status"] == "accepted", receipt
    assert env.sql("SELECT etab, count(*) FROM visit GROUP BY etab ORDER BY etab") == [
        (GOOD, sum(GOOD_VISITS.values())), (OTHER, 6)]
    return RepriseEnv(env, roots, smtp_sink)


def _states(run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti.state for ti in session.query(TaskInstance).filter(
            TaskInstance.run_id == run.run_id, TaskInstance.dag_id == run.dag_id)}


def _patients(path: Path) -> tuple[str, int]:
    text = path.read_text(encoding="utf-8")
    return re.search(r"<FINESS>(\d+)</FINESS>", text).group(1), text.count("<PATIENT>")


def _mail_parts(m) -> tuple[str, str]:
    return m.message.get_body(("plain",)).get_content(), m.message.get_body(("html",)).get_content()


# --- end to end ----------------------------------------------------------------------------------------------

def test_reprise_two_months_to_invs_and_atih(reprise_env):
    env = reprise_env
    run = env.run({"establishment": GOOD, "start_date": M2.isoformat(), "end_date": M1_END.isoformat(),
                   "recipients": ["invs", "atih"]})
    assert run.state == "success", _states(run)
    assert _states(run) == {"validate": "success", "send": "success", "notify": "success",
                            "notify_failure": "skipped"}

    invs_m2 = f"RPU_{GOOD}_0_{M2:%Y%m%d}_{M2_END:%Y%m%d}_reprise.xml"
    invs_m1 = f"RPU_{GOOD}_0_{M1:%Y%m%d}_{LAST:%Y%m%d}_reprise.xml"      # no data after LAST: not declared
    jan1 = date(M1_END.year, 1, 1)
    atih = f"ATIH_RPU_{GOOD}_0_{jan1:%Y%m%d}_{M1_END:%Y%m%d}_reprise.xml"
    atih_visits = sum(n for d, n in GOOD_VISITS.items() if jan1 <= d <= M1_END)

    # one InVS file per month, only GOOD's visits of that month
    assert env.uploaded("invs") == sorted([invs_m1, invs_m2])
    assert _patients(env.roots["invs"] / invs_m2) == (GOOD, 3)
    assert _patients(env.roots["invs"] / invs_m1) == (GOOD, 3)
    # one ATIH file, cumulative since 1 January, anonymised, with its manifest
    assert env.uploaded("atih") == sorted([atih, atih + ".manifest.json"])
    atih_text = (env.roots["atih"] / atih).read_text(encoding="utf-8")
    assert atih_text.count("<PATIENT>") == atih_visits
    assert "<AGE>" in atih_text and "NAISSANCE" not in atih_text and "ROUSSET" not in atih_text
    assert env.uploaded("ars") == []

    assert env.ledger() == [
        ("atih", "reprise", GOOD, jan1, M1_END, atih, atih_visits, "sent"),
        ("invs", "reprise", GOOD, M2, M2_END, invs_m2, 3, "sent"),
        ("invs", "reprise", GOOD, M1, LAST, invs_m1, 3, "sent"),
    ]

    [m] = env.mails()
    assert m.rcpt_tos == [ARS]
    assert m.message.get_content_type() == "multipart/alternative"
    text, html = _mail_parts(m)
    assert "SIMULATION" not in m.subject and "CH de Valbourg" in m.subject and GOOD in m.subject
    assert "3 fichiers envoyés" in m.subject
    for name in (invs_m1, invs_m2, atih):
        assert name in text and name in html
    assert "passages : 3" in text and f"passages : {atih_visits}" in text
    assert f"du {_fr(M2)} au {_fr(M1_END)}" in text
    assert "envoyé" in text and run.run_id in text
    for trace in PATIENT_TRACES:
        assert trace not in m.subject and trace not in text and trace not in html, trace


def test_dry_run_sends_nothing_and_mails_what_would_be_sent(reprise_env):
    env = reprise_env
    run = env.run({"establishment": GOOD, "start_date": M2.isoformat(), "end_date": M1_END.isoformat(),
                   "recipients": ["invs", "ars"], "dry_run": True})
    assert run.state == "success", _states(run)
    assert env.uploaded("invs") == env.uploaded("atih") == env.uploaded("ars") == []
    assert env.ledger() == []
    assert not [p for p in (env.data_dir / "outbox").rglob("*") if p.is_file()]   # nothing prepared either

    [m] = env.mails()
    text, html = _mail_parts(m)
    assert "SIMULATION" in m.subject
    assert "SIMULATION — rien n'a été envoyé" in text and "SIMULATION — rien n'a été envoyé" in html
    ars_file = f"ARS_demo_{GOOD}_{M2:%Y%m%d}_{M1_END:%Y%m%d}_reprise.csv.gz"
    for name in (f"RPU_{GOOD}_0_{M2:%Y%m%d}_{M2_END:%Y%m%d}_reprise.xml",
                 f"RPU_{GOOD}_0_{M1:%Y%m%d}_{LAST:%Y%m%d}_reprise.xml", ars_file):
        assert name in text
    assert text.count("passages : 3") == 2 and "passages : 6" in text     # InVS per month, ARS the period
    assert "simulation, non envoyé" in text and "statut   : envoyé" not in text


def test_no_ars_address_skips_the_mail(reprise_env):
    env = reprise_env
    write_region(env.region_dir, alerts={"ars_none": True})      # no ARS address, on purpose
    assert env.region().ars_emails == ()
    run = env.run({"establishment": GOOD, "start_date": M1.isoformat(), "end_date": M1_END.isoformat(),
                   "dry_run": True})
    assert run.state == "success"
    assert _states(run)["notify"] == "skipped"
    assert env.mails() == []


def test_a_failed_upload_does_not_stop_the_others_and_a_retry_sends_only_what_is_missing(reprise_env):
    from contextlib import contextmanager

    from rpu import reprise, sftp

    env = reprise_env
    region = env.region()
    plan = reprise.validate(region, {"establishment": GOOD, "start_date": M2.isoformat(),
                                     "end_date": M1_END.isoformat(), "recipients": ["invs", "atih"]}, TODAY)

    @contextmanager
    def atih_down():
        raise ConnectionRefusedError("ATIH SFTP unreachable")
        yield  # pragma: no cover

    def opener(down: set):
        return lambda name: atih_down() if name in down else sftp.open_remote(region.sends.recipients[name].conn_id)

    first = reprise.run(region, plan, "manual__retry", env.db_url, opener({"atih"}), dry_run=False)
    assert [f["status"] for f in first["files"]] == ["sent", "sent", "failed"]
    assert reprise.failed_files(first) == [first["files"][2]["file_name"]]
    assert first["totals"]["sent"] == 2 and first["totals"]["failed"] == 1
    assert env.uploaded("atih") == [] and len(env.uploaded("invs")) == 2
    _, text, _ = reprise.summary_mail(region, first)
    assert "ÉCHEC" in text and "ATIH SFTP unreachable" not in text      # the reason stays in the log

    again = reprise.run(region, plan, "manual__retry", env.db_url, opener(set()), dry_run=False)
    assert [f["status"] for f in again["files"]] == ["sent", "sent", "sent"] and not reprise.failed_files(again)
    assert env.sql("SELECT recipient, status, attempts FROM send_ledger ORDER BY recipient, period_start") == [
        ("atih", "sent", 2), ("invs", "sent", 1), ("invs", "sent", 1)]   # the InVS files were not sent twice


def _bad_forms():
    tomorrow = TODAY + timedelta(days=1)
    return {   # form, what the task log says
        "end_before_start": ({"establishment": GOOD, "start_date": M1.isoformat(), "end_date": M2.isoformat()},
                             "est antérieure à la date de début"),
        "end_in_future": ({"establishment": GOOD, "start_date": M1.isoformat(), "end_date": tomorrow.isoformat()},
                          f"la date de fin ({_fr(tomorrow)}) est dans le futur"),
        "longer_than_a_year": ({"establishment": GOOD, "start_date": (M1_END - timedelta(days=366)).isoformat(),
                                "end_date": M1_END.isoformat()}, "période trop longue : 367 jours"),
        "shadow_to_invs": ({"establishment": SHADOW, "start_date": M1.isoformat(), "end_date": M1_END.isoformat()},
                           "en ombre"),
    }


@pytest.mark.parametrize("case", list(_bad_forms()))
def test_invalid_form_fails_at_validate_and_sends_nothing(reprise_env, case, capfd):
    env = reprise_env
    form, says = _bad_forms()[case]
    run = env.run({"recipients": ["invs", "atih", "ars"], **form})
    assert run.state == "failed"
    out = "".join(capfd.readouterr())
    assert "Formulaire de reprise invalide" in out and says in out     # the task log explains, in French
    states = _states(run)
    assert states["validate"] == "failed"
    assert states["send"] == "upstream_failed" and states["notify"] == "upstream_failed"
    assert states["notify_failure"] == "success"
    assert env.uploaded("invs") == env.uploaded("atih") == env.uploaded("ars") == []
    assert env.ledger() == []
    [m] = env.mails()                                                   # the ARS is told what to correct
    text, html = _mail_parts(m)
    assert "Reprise NON FAITE" in m.subject and "formulaire à corriger" in m.subject
    assert says in text and "rien n'a été préparé ni envoyé" in text
    assert "Ce qui est à corriger" in html and run.run_id in text


def test_a_recipient_down_fails_the_run_and_the_ars_is_told_what_did_not_go(reprise_env, sftp_server,
                                                                             monkeypatch):
    """`send` fails for good (ATIH refuses the login): the run is red for operations, and the ARS gets the
    list of files that went and of the one that did not, from the ledger."""
    env = reprise_env
    region = env.region()
    monkeypatch.setenv(f"AIRFLOW_CONN_{region.sends.recipients['atih'].conn_id.upper()}",
                       sftp_server.airflow_conn_json("nobody", "wrong"))
    run = env.run({"establishment": GOOD, "start_date": M2.isoformat(), "end_date": M1_END.isoformat(),
                   "recipients": ["invs", "atih"]})
    assert run.state == "failed"
    assert _states(run) == {"validate": "success", "send": "failed", "notify": "upstream_failed",
                            "notify_failure": "success"}
    assert len(env.uploaded("invs")) == 2 and env.uploaded("atih") == []
    assert [r[7] for r in env.ledger()] == ["failed", "sent", "sent"]

    [m] = env.mails()
    text, html = _mail_parts(m)
    assert "1 fichier en échec" in m.subject
    atih = f"ATIH_RPU_{GOOD}_0_{date(M1_END.year, 1, 1):%Y%m%d}_{M1_END:%Y%m%d}_reprise.xml"
    blocks = {b.split("fichier  : ")[1].split()[0]: b for b in text.split("\n\n") if "fichier  : " in b}
    assert set(blocks) == {atih, f"RPU_{GOOD}_0_{M2:%Y%m%d}_{M2_END:%Y%m%d}_reprise.xml",
                           f"RPU_{GOOD}_0_{M1:%Y%m%d}_{LAST:%Y%m%d}_reprise.xml"}
    for name, block in blocks.items():
        assert ("ÉCHEC de l'envoi" in block) == (name == atih), block
    assert "ATTENTION : 1 fichier n'a pas pu être envoyé" in text and "nobody" not in text
    for trace in PATIENT_TRACES:
        assert trace not in m.subject and trace not in text and trace not in html, trace


@pytest.mark.parametrize("form", [
    {"establishment": "990000999"},                                  # not in the region's list
    {"start_date": f"{M1:%Y/%m/%d}"},                                # not a date
    {"recipients": ["invs", "spf"]},                                 # not a recipient
    {"recipients": []},                                              # none
], ids=["unknown_establishment", "bad_date_format", "unknown_recipient", "no_recipient"])
def test_values_outside_the_typed_form_are_refused_before_any_run(reprise_env, form):
    """What the Params' JSON schema can say (choice lists, date format, at least one recipient), Airflow checks
    when the run is created: the trigger form and the REST API refuse it, no run exists, nothing is sent."""
    env = reprise_env
    conf = {"establishment": GOOD, "start_date": M1.isoformat(), "end_date": M1_END.isoformat(), **form}
    with pytest.raises(ValueError) as err:
        env.run(conf)
    assert type(err.value).__name__ == "ParamValidationError"
    assert env.uploaded("invs") == env.uploaded("atih") == env.uploaded("ars") == []
    assert env.ledger() == [] and env.mails() == []


# --- policy of the reprise DAGs (the shared policy test covers the scheduled ones) -------------------------

PROJECT = Path(__file__).resolve().parents[2]


def _shipped_regions():
    from rpu.config import load_regions

    return load_regions(PROJECT / "config" / "regions")


@pytest.mark.parametrize("region", _shipped_regions(), ids=lambda r: r.code)
def test_reprise_dag_policy(shipped_dagbag, region):
    assert shipped_dagbag.import_errors == {}
    dag = shipped_dagbag.get_dag(f"{region.code}_reprise")
    assert dag is not None
    assert type(dag.timetable).__name__ == "NullTimetable" and not dag.timetable.can_be_scheduled   # schedule=None
    assert set(dag.tags) == {region.code, "rpu", "reprise"}
    assert dag.doc_md and region.name in dag.doc_md and "Simulation" in dag.doc_md
    assert {t.task_id for t in dag.tasks} == {"validate", "send", "notify", "notify_failure"}
    assert dag.get_task("notify_failure").trigger_rule == "one_failed"
    assert dag.get_task("notify_failure").upstream_task_ids == {"validate", "send"}
    for task in dag.tasks:
        assert task.owner == region.team, task.task_id
        assert task.retries >= 1, f"{task.task_id} has no retries"
        assert task.python_callable.__doc__, f"{task.task_id} has no docstring"

    params = dag.params
    assert set(params.keys()) == {"establishment", "start_date", "end_date", "recipients", "dry_run"}
    schema = {k: params.get_param(k).schema for k in params}
    assert schema["establishment"]["enum"] == [e.finess for e in region.establishments]
    assert set(schema["establishment"]["values_display"]) == set(schema["establishment"]["enum"])
    for e in region.establishments:
        assert e.name in schema["establishment"]["values_display"][e.finess]
        assert e.finess in schema["establishment"]["values_display"][e.finess]
    assert schema["start_date"]["format"] == schema["end_date"]["format"] == "date"
    # the trigger form's multi-select lists `examples`; `items.enum` validates the values
    rec = schema["recipients"]
    assert rec["type"] == "array" and rec["items"]["enum"] == rec["examples"] == ["invs", "atih", "ars"]
    assert set(rec["values_display"]) == {"invs", "atih", "ars"}
    assert params.get_param("recipients").value == ["invs"]
    assert schema["dry_run"]["type"] == "boolean" and params.get_param("dry_run").value is False
    # the default form (establishment and dates still to fill) is incomplete: triggering needs them
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=r"param establishment: No value passed"):
        params.validate()
    filled = {"establishment": GOOD, "start_date": "2026-03-01", "end_date": "2026-03-31"}
    for missing in (*filled, None):                    # each of the three is needed, and they are enough
        form = copy.deepcopy(params)
        for key, value in filled.items():
            if key != missing:
                form[key] = value
        if missing is None:
            assert form.validate() == {**filled, "recipients": ["invs"], "dry_run": False}
            continue
        with pytest.raises(ParamValidationError, match=rf"param {missing}: No value passed"):
            form.validate()


# --- unit: rpu.reprise.validate -----------------------------------------------------------------------------

@pytest.fixture
def region():
    from rpu.config import load_region

    return load_region(PROJECT / "config" / "regions" / "demo.yaml")


def _form(**kw) -> dict:
    return {"establishment": GOOD, "start_date": "2026-03-01", "end_date": "2026-03-31", "recipients": ["invs"],
            "dry_run": False, **kw}


def test_validate_a_good_form(region):
    from rpu.reprise import ReprisePlan, validate

    plan = validate(region, _form(recipients=["ars", "invs", "invs"]), date(2026, 4, 2))
    assert plan == ReprisePlan("demo", GOOD, "CH de Valbourg", date(2026, 3, 1), date(2026, 3, 31),
                               ("invs", "ars"), False, date(2026, 4, 2))
    assert plan.days == 31
    assert ReprisePlan.from_dict(plan.to_dict()) == plan


def test_validate_period_of_366_days_ok_367_refused(region):
    from rpu.reprise import RepriseError, validate

    assert validate(region, _form(start_date="2024-01-01", end_date="2024-12-31"), date(2026, 1, 1)).days == 366
    assert validate(region, _form(start_date="2025-03-01", end_date="2026-03-01"), date(2026, 4, 1)).days == 366
    with pytest.raises(RepriseError, match="367 jours"):
        validate(region, _form(start_date="2025-02-28", end_date="2026-03-01"), date(2026, 4, 1))
    assert validate(region, _form(start_date="2026-03-01", end_date="2026-03-01"), date(2026, 4, 1)).days == 1


def test_validate_end_today_ok_tomorrow_refused_in_the_regions_time_zone(region):
    from rpu.reprise import RepriseError, today_in, validate

    # 23:30 UTC on 31 December is already 1 January in Paris: 1 January is "today", not the future
    now = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)
    today = today_in(region, now)
    assert today == date(2027, 1, 1)
    assert validate(region, _form(start_date="2026-12-01", end_date="2027-01-01"), today).end == date(2027, 1, 1)
    with pytest.raises(RepriseError, match="dans le futur"):
        validate(region, _form(start_date="2026-12-01", end_date="2027-01-02"), today)
    # the same instant is still 31 December in French Guiana (UTC-3): 1 January is the future there
    guyane = dataclasses.replace(region, timezone="America/Cayenne")
    assert today_in(guyane, now) == date(2026, 12, 31)
    with pytest.raises(RepriseError, match=r"dans le futur.*America/Cayenne"):
        validate(guyane, _form(start_date="2026-12-01", end_date="2027-01-01"), today_in(guyane, now))


@pytest.mark.parametrize("changes,message", [
    ({"establishment": "990000999"}, "établissement inconnu : « 990000999 »"),
    ({"establishment": ""}, "établissement manquant"),
    ({"establishment": EJ}, r"FINESS juridique \(EJ\) : choisissez le site.*990000101.*990000119"),
    ({"establishment": SHADOW}, "en ombre"),
    ({"start_date": "2026/03/01"}, "date de début invalide"),
    ({"start_date": "01/03/2026"}, "date de début invalide"),
    ({"end_date": "2026-02-30"}, "date de fin invalide"),
    ({"end_date": None}, "date de fin manquante"),
    ({"start_date": "2026-04-01"}, r"antérieure à la date de début \(01/04/2026\)"),
    ({"recipients": []}, "aucun destinataire"),
    ({"recipients": ["invs", "spf"]}, "destinataire inconnu : « spf »"),
    ({"dry_run": "peut-être"}, "simulation"),
])
def test_validate_refuses_with_a_french_message(region, changes, message):
    from rpu.reprise import RepriseError, validate

    with pytest.raises(RepriseError, match=message) as err:
        validate(region, _form(**changes), date(2026, 4, 2))
    assert str(err.value).startswith("Formulaire de reprise invalide")


def test_validate_shadow_establishment_to_ars_only_is_fine(region):
    from rpu.reprise import validate

    assert validate(region, _form(establishment=SHADOW, recipients=["ars"]), date(2026, 4, 2)).etab == SHADOW


def test_validate_reports_every_problem_at_once(region):
    from rpu.reprise import RepriseError, validate

    with pytest.raises(RepriseError) as err:
        validate(region, _form(establishment="x", end_date="2027-01-01", recipients=[]), date(2026, 4, 2))
    assert len(err.value.problems) == 3
    assert "établissement inconnu" in str(err.value) and "futur" in str(err.value) and "destinataire" in str(err.value)


# --- unit: rpu.mail ----------------------------------------------------------------------------------------

def test_render_escapes_html_but_not_text(region):
    from rpu import mail
    from rpu.reprise import ReprisePlan, STATUS_LABELS, summarize

    evil = '<script>alert("x")</script> & Cie'
    plan = ReprisePlan("demo", GOOD, evil, date(2026, 3, 1), date(2026, 3, 31), ("invs",), False, date(2026, 4, 2))
    files = [{"recipient": "invs", "file_name": "RPU_<b>.xml", "period_start": "2026-03-01",
              "period_end": "2026-03-31", "visits": 1234, "status": "sent"}]
    s = summarize(region, plan, files, run_id="manual__<i>", dry_run=False)
    subject, text, html = mail.render("reprise_summary", region=region, s=s, status_labels=STATUS_LABELS,
                                      recipient_labels={"invs": "InVS"}, max_days=366)
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Cie" in html
    assert "RPU_&lt;b&gt;.xml" in html and "manual__&lt;i&gt;" in html
    assert evil in text and "RPU_<b>.xml" in text and evil in subject and "\n" not in subject
    assert "1\u00a0234" in text


def test_render_is_generic_and_says_what_is_missing(tmp_path):
    from rpu import mail

    (tmp_path / "hello.subject.j2").write_text("Bonjour\n  {{ who }}\n", encoding="utf-8")
    (tmp_path / "hello.txt.j2").write_text("Bonjour {{ who }}, {{ n|number_fr }} passages.\n", encoding="utf-8")
    (tmp_path / "hello.html.j2").write_text("<p>Bonjour {{ who }}</p>\n", encoding="utf-8")
    assert mail.render("hello", templates_dir=tmp_path, who="<A&B>", n=12345) == (
        "Bonjour <A&B>", "Bonjour <A&B>, 12\u00a0345 passages.\n", "<p>Bonjour &lt;A&amp;B&gt;</p>\n")
    assert mail.templates(tmp_path) == ["hello"]
    with pytest.raises(mail.MailTemplateError, match="who"):
        mail.render("hello", templates_dir=tmp_path)                 # a missing value is an error, not ""
    with pytest.raises(mail.MailTemplateError, match="absent.txt.j2"):
        (tmp_path / "absent.subject.j2").write_text("x", encoding="utf-8")
        mail.render("absent", templates_dir=tmp_path)
    assert "reprise_summary" in mail.templates()


def test_the_summary_waits_while_the_mail_server_is_down_and_leaves_when_it_is_back(reprise_env, monkeypatch):
    """SMTP down longer than notify's retries: the summary is kept pending (it used to be lost), and the next DAG
    that mails — here the daily watch — sends it once the server answers again."""
    import json

    import pendulum

    from rpu_dev.localservices import free_port

    env = reprise_env
    region = env.region()
    conn_var = f"AIRFLOW_CONN_{region.smtp_conn_id.upper()}"
    working = json.loads(env.smtp.airflow_conn_json())
    monkeypatch.setenv(conn_var, json.dumps({**working, "port": free_port("127.0.0.1")}))    # nothing listens
    run = env.run({"establishment": GOOD, "start_date": M1.isoformat(), "end_date": M1_END.isoformat(),
                   "dry_run": True})
    assert run.state == "failed" and _states(run)["notify"] == "failed"
    assert env.mails() == []
    assert env.sql("SELECT template, state FROM mail_outbox") == [("reprise_summary", "pending")]
    monkeypatch.setenv(conn_var, json.dumps(working))                                    # the server is back
    watch = env.dag("demo_watch").test(logical_date=pendulum.now("Europe/Paris"))
    assert watch.state == "success"
    [m] = [m for m in env.mails() if "Reprise" in m.subject]
    assert "SIMULATION" in m.subject and "CH de Valbourg" in m.subject
    assert env.sql("SELECT state FROM mail_outbox WHERE template = 'reprise_summary'") == [("done",)]
