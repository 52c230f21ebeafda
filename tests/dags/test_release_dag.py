"""The `<region>_release` DAG with dag.test(): a batch the quality gate quarantined (intake DAG, real SFTP and
PostgreSQL) released from the trigger form, by file id or by FINESS and file name; a file not in quarantine
fails the run at once (no retry) with the reason."""
from __future__ import annotations

from datetime import date

import pytest

from support.dag_runs import run_form
from support.regions import write_region
from support.rpu_xml import rpu_file, visit

GOOD = "990000127"    # CH de Valbourg
OTHER = "990000135"   # CH de Saint-Aurèle
REASON = "faux positif : codes SEXE corrigés par l'établissement"


def _visits(n: int, **changes) -> list[dict]:
    return [visit(ENTREE=f"01/11/2026 {8 + i % 12:02d}:{i % 60:02d}", SORTIE=f"01/11/2026 {20 + i % 3:02d}:00",
                  **changes) for i in range(n)]


def _exported(env, etab) -> int:
    from rpu import store

    with store.connection(env.db_url) as conn:
        return conn.execute(store.query("reprise_count"), {   # the visits an export would write (held back: not)
            "etab": etab, "ordre": None, "start": date(2026, 10, 26), "end": date(2026, 11, 1)}).fetchone()[0]


@pytest.fixture
def held(intake_env):
    """The demo region with SEXE_DOMAIN blocking; GOOD's file quarantined, OTHER's forwarded. → (env, ids)"""
    env = intake_env
    write_region(env.region_dir, quality={"blocking": ["SEXE_DOMAIN"]})
    bad = _visits(10)
    bad[0]["SEXE"] = "X"
    env.drop(GOOD, "RPU_bad.xml", rpu_file(bad, finess=GOOD))
    env.drop(OTHER, "RPU_ok.xml", rpu_file(_visits(5), finess=OTHER))
    assert env.dag("demo_intake").test().state == "success"
    ids = dict(env.sql("SELECT file_name, id FROM received_file"))
    assert env.sql("SELECT file_id FROM quality_quarantine WHERE released_at IS NULL") == [(ids["RPU_bad.xml"],)]
    assert _exported(env, GOOD) == 0 and _exported(env, OTHER) == 5
    return env, ids


def _states(run) -> dict:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


def test_release_by_file_id_makes_the_batch_exportable(held):
    env, ids = held
    run = run_form(env.dag("demo_release"), {"file_id": ids["RPU_bad.xml"], "reason": REASON})
    assert run.state == "success"
    assert _exported(env, GOOD) == 10
    [(by, why)] = env.sql("SELECT released_by, release_reason FROM quality_quarantine WHERE file_id = %s",
                          ids["RPU_bad.xml"])
    assert by == (run.triggering_user_name or f"Airflow ({run.run_id})")     # dag.test(): no user
    assert why == REASON                                                       # the form's Motif, kept with it


def test_release_by_finess_and_file_name_and_again_changes_nothing(held):
    env, ids = held
    conf = {"finess": GOOD, "file_name": "RPU_bad.xml", "reason": REASON}
    assert run_form(env.dag("demo_release"), conf).state == "success"
    assert _exported(env, GOOD) == 10
    [(when,)] = env.sql("SELECT released_at FROM quality_quarantine WHERE file_id = %s", ids["RPU_bad.xml"])
    assert run_form(env.dag("demo_release"), conf).state == "success"      # already released: nothing changes
    assert env.sql("SELECT released_at FROM quality_quarantine WHERE file_id = %s", ids["RPU_bad.xml"]) == [(when,)]


@pytest.mark.parametrize("conf, message", [
    ({"file_id": "OK"}, "is not in quarantine"),                              # a file forwarded: never held
    ({"finess": OTHER, "file_name": "RPU_ok.xml"}, "no file 'RPU_ok.xml' of establishment 990000135 is in quarantine"),
    ({"finess": GOOD}, "no file named: give its file id, or its FINESS and file name"),
    ({"file_id": "BAD", "finess": GOOD, "file_name": "RPU_bad.xml"}, "not both"),
])
def test_a_file_not_in_quarantine_fails_the_run_once_with_the_reason(held, capfd, conf, message):
    env, ids = held
    conf = {k: (ids["RPU_ok.xml"] if v == "OK" else ids["RPU_bad.xml"] if v == "BAD" else v) for k, v in conf.items()}
    if "file_id" in conf and "finess" not in conf:
        message = f"file #{conf['file_id']} {message}"
    capfd.readouterr()
    run = run_form(env.dag("demo_release"), conf | {"reason": REASON})
    assert run.state == "failed"
    assert _states(run) == {"release": ("failed", 1)}        # failed for good: the region allows 1 retry
    assert message in capfd.readouterr().out
    assert _exported(env, GOOD) == 0                                   # still held
