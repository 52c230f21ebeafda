"""rpu.reprise beyond `validate` (tested with the DAG in tests/dags/test_reprise_dag.py): the trigger form, the
summary and its totals, a dry run counted on PostgreSQL, a run uploaded to the suite's SFTP server and what the
send ledger says of a run afterwards."""
from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from rpu import intake, reprise
from rpu.reprise import ReprisePlan
from support.rpu_xml import rpu_file, visit
from support.sftp_session import Account

ETAB = "990000127"
SHADOW = "990000200"
OCT, NOV = date(2026, 10, 26), date(2026, 11, 1)


def _plan(recipients=("invs",), dry_run=False, start=OCT, end=NOV) -> ReprisePlan:
    return ReprisePlan("demo", ETAB, "CH de Valbourg", start, end, recipients, dry_run, date(2026, 11, 20))


@pytest.fixture
def env(db, region, tmp_path, sftp_server):
    """Region with a private outbox, 2 visits of ETAB on 31/10 and 3 on 01/11, an SFTP account per recipient."""
    region = dataclasses.replace(region, outbox_dir=tmp_path / "outbox")
    visits = [visit(ENTREE="31/10/2026 08:00", SORTIE="31/10/2026 09:00")] * 2 + [visit()] * 3
    path = tmp_path / "in.xml"
    path.write_bytes(rpu_file(visits))
    assert intake.ingest_path(region, db, path, sender=ETAB)["status"] == "accepted"
    accounts = {r: Account(sftp_server, tmp_path / r) for r in reprise.RECIPIENTS}
    yield region, db, accounts
    for a in accounts.values():
        a.remove()


def test_the_form_offers_the_regions_sites_and_says_the_limit(region):
    form = reprise.form(region)
    assert form["establishment"]["enum"] == [e.finess for e in region.establishments]
    labels = form["establishment"]["values_display"]
    assert labels[ETAB] == f"CH de Valbourg ({ETAB})" and labels[SHADOW].endswith("en ombre : ARS seulement")
    assert form["recipients"]["items"]["enum"] == list(reprise.RECIPIENTS) and form["recipients"]["default"] == ["invs"]
    assert f"{reprise.MAX_DAYS} jours" in form["end_date"]["description"]


def test_problems_of_is_empty_for_a_good_form_and_lists_each_problem_otherwise(region):
    good = {"establishment": ETAB, "start_date": "2026-10-26", "end_date": "2026-11-01"}
    assert reprise.problems_of(region, good, date(2026, 11, 20)) == []
    problems = reprise.problems_of(region, good | {"end_date": "2026-12-01", "recipients": ["spf"]},
                                   date(2026, 11, 20))
    assert len(problems) == 2 and any("futur" in p for p in problems) and any("spf" in p for p in problems)


def test_summarize_totals_by_status_and_recipient_and_failed_files(region):
    files = [{"recipient": "invs", "file_name": "a", "visits": 3, "status": "sent"},
             {"recipient": "invs", "file_name": "b", "visits": None, "status": "failed"},
             {"recipient": "ars", "file_name": "c", "visits": 5, "status": "sent"}]
    s = reprise.summarize(region, _plan(("invs", "ars")), files, run_id="r", dry_run=False)
    assert s["totals"] == {"files": 3, "sent": 2, "failed": 1, "simulated": 0,
                           "by_recipient": {"invs": {"files": 2, "visits": 3}, "ars": {"files": 1, "visits": 5}}}
    assert (s["days"], s["start"], s["etab_name"]) == (7, "2026-10-26", "CH de Valbourg")
    assert reprise.failed_files(s) == ["b"]
    simulated = [dict(f, status="simulation") for f in files]
    assert reprise.failed_files(reprise.summarize(region, _plan(("invs", "ars")), simulated, run_id="r",
                                                  dry_run=True)) == []


def test_a_dry_run_counts_per_file_and_records_nothing(env):
    region, db, accounts = env
    s = reprise.run(region, _plan(dry_run=True), "r1", db, lambda r: accounts[r].open(), dry_run=True)
    assert [(f["recipient"], f["status"], f["visits"]) for f in s["files"]] == [("invs", "simulation", 2),
                                                                               ("invs", "simulation", 3)]
    assert s["totals"]["simulated"] == 2 and reprise.sends.ledger(db) == []
    assert not any(accounts["invs"].root.iterdir())
    assert reprise.describe(s).startswith("SIMULATION — rien n'a été envoyé : CH de Valbourg (990000127)")


def test_a_run_sends_each_file_and_recorded_reads_the_same_from_the_ledger(env):
    region, db, accounts = env
    s = reprise.run(region, _plan(("invs", "ars")), "r1", db, lambda r: accounts[r].open(), dry_run=False)
    assert [(f["recipient"], f["status"]) for f in s["files"]] == [("invs", "sent")] * 2 + [("ars", "sent")]
    assert s["totals"]["by_recipient"] == {"invs": {"files": 2, "visits": 5}, "ars": {"files": 1, "visits": 5}}
    assert sorted(p.name for p in accounts["invs"].root.iterdir()) == sorted(f["file_name"] for f in s["files"][:2])
    again = reprise.recorded(region, _plan(("invs", "ars")), "r1", db)
    assert again["files"] == s["files"]
    other_run = reprise.recorded(region, _plan(("invs", "ars")), "r2", db)   # nothing sent under that run id
    assert {f["status"] for f in other_run["files"]} == {"failed"}

