"""The quality gate inside the `<region>_intake` DAG (dag.test(), real SFTP server, real PostgreSQL): results
stored, receipt content, blocking vs non-blocking, quarantine kept out of the exports, release."""
from __future__ import annotations

import json
from datetime import date

import pytest

from support.regions import write_region
from support.rpu_xml import rpu_file, visit

GOOD = "990000127"    # CH de Valbourg
OTHER = "990000135"   # CH de Saint-Aurèle


def _visits(n: int, **changes) -> list[dict]:
    return [visit(ENTREE=f"01/11/2026 {8 + i % 12:02d}:{i % 60:02d}", SORTIE=f"01/11/2026 {20 + i % 3:02d}:00",
                  **changes) for i in range(n)]


def _bad(n: int = 10) -> list[dict]:
    vs = _visits(n)
    vs[0]["SEXE"] = "X"       # SEXE_DOMAIN
    vs[1]["DP"] = "zz"        # DP_FORMAT
    return vs


def _receipt(env, finess, name) -> tuple[str, dict]:
    ack = env.sftp_root / finess / "ack"
    return ((ack / f"{name}.ack.txt").read_text(encoding="utf-8"),
            json.loads((ack / f"{name}.ack.json").read_text(encoding="utf-8")))


def _exported(env, etab) -> int:
    from rpu import store

    with store.connection(env.db_url) as conn:
        return conn.execute(store.query("reprise_count"), {   # the visits an export would write (held back: not)
            "etab": etab, "ordre": None, "start": date(2026, 10, 26), "end": date(2026, 11, 1)}).fetchone()[0]


def test_gate_results_are_stored_and_told_in_the_receipt(intake_env):
    env = intake_env
    env.drop(GOOD, "RPU_bad.xml", rpu_file(_bad(), finess=GOOD))
    env.drop(OTHER, "RPU_clean.xml", rpu_file(_visits(5), finess=OTHER))
    env.drop(OTHER, "RPU_broken.xml", rpu_file(_visits(2), finess=OTHER, extract="03/11/2026 03:00:00")[:-40])
    run = env.dag("demo_intake").test()
    assert run.state == "success"

    rows = env.sql("SELECT f.file_name, r.suite, r.status, r.engine FROM quality_run r "
                   "JOIN received_file f ON f.id = r.file_id ORDER BY 1, 2")
    assert rows == [("RPU_bad.xml", "rpu_batch", "passed", "sql"), ("RPU_bad.xml", "rpu_visit", "failed", "sql"),
                    ("RPU_clean.xml", "rpu_batch", "passed", "sql"),
                    ("RPU_clean.xml", "rpu_visit", "passed", "sql")]   # none for the rejected file
    failed = env.sql("SELECT r.expectation, r.unexpected_count, r.unexpected_percent, r.blocking "
                     "FROM quality_result r JOIN quality_run u ON u.id = r.run_id WHERE NOT r.success ORDER BY 1")
    assert failed == [("DP_FORMAT", 1, 10.0, False), ("SEXE_DOMAIN", 1, 10.0, False)]

    text, data = _receipt(env, GOOD, "RPU_bad.xml")
    assert "ACCEPTÉ" in text and "2 indicateur(s) non atteint(s)" in text
    assert "[SEXE_DOMAIN] valeur de SEXE hors nomenclature (M, F, I) : 1 passage(s) (10,0 %)" in text
    assert "[DP_FORMAT] diagnostic principal hors format CIM-10 : 1 passage(s) (10,0 %)" in text
    assert "QUARANTAINE" not in text
    assert data["quality"]["status"] == "failed" and not data["quality"]["quarantined"]
    assert [f["name"] for f in data["quality"]["failed"]] == ["DP_FORMAT", "SEXE_DOMAIN"]
    assert "tous les indicateurs sont atteints" in _receipt(env, OTHER, "RPU_clean.xml")[0]
    assert _receipt(env, OTHER, "RPU_broken.xml")[1]["quality"] is None
    # non-blocking: the batch is forwarded; the file went to archive/ as any accepted file
    assert _exported(env, GOOD) == 10
    assert (env.sftp_root / GOOD / "archive" / "RPU_bad.xml").exists()
    assert not env.sql("SELECT viewname FROM pg_views WHERE schemaname = 'rpu_quality'")


def test_a_blocking_failure_quarantines_until_release(intake_env, capsys):
    from rpu.cli import main

    env = intake_env
    write_region(env.region_dir, quality={"blocking": ["SEXE_DOMAIN"]})
    env.drop(GOOD, "RPU_bad.xml", rpu_file(_bad(), finess=GOOD))
    env.drop(OTHER, "RPU_dp.xml", rpu_file(_visits(5, DP="zz"), finess=OTHER))   # fails DP_FORMAT, not blocking
    assert env.dag("demo_intake").test().state == "success"

    text, data = _receipt(env, GOOD, "RPU_bad.xml")
    assert "ACCEPTÉ" in text and "— BLOQUANT" in text and "LOT EN QUARANTAINE (SEXE_DOMAIN)" in text
    assert data["quality"]["quarantined"]
    assert (env.sftp_root / GOOD / "archive" / "RPU_bad.xml").exists()      # accepted: never in rejected/
    assert env.sql("SELECT count(*) FROM visit WHERE etab = %s", GOOD) == [(10,)]   # kept …
    assert _exported(env, GOOD) == 0                                            # … not forwarded
    assert _exported(env, OTHER) == 5 and not _receipt(env, OTHER, "RPU_dp.xml")[1]["quality"]["quarantined"]

    fid = data["file_id"]
    assert main(["release", "--region", "demo", "--db", env.db_url, "--file-id", str(fid), "--by", "oru"]) == 0
    assert _exported(env, GOOD) == 10
    assert main(["release", "--region", "demo", "--db", env.db_url, "--file-id", str(fid)]) == 0   # idempotent
    assert "already released" in capsys.readouterr().out
    assert env.sql("SELECT released_by FROM quality_quarantine WHERE file_id = %s", fid) == [("oru",)]


def test_a_crash_of_the_gate_keeps_the_load_and_still_sends_the_receipt(intake_env, monkeypatch):
    from rpu.quality import gx

    def boom(*args, **kwargs):
        raise RuntimeError("GX exploded")

    monkeypatch.setattr(gx, "visit_suite_per_file", boom)   # the run's batches at once, then each alone
    monkeypatch.setattr(gx, "visit_suite_sql", boom)
    env = intake_env
    env.drop(GOOD, "RPU_1.xml", rpu_file(_visits(4), finess=GOOD))
    assert env.dag("demo_intake").test().state == "success"
    assert env.sql("SELECT status, visits_loaded FROM received_file") == [("accepted", 4)]
    assert env.sql("SELECT suite, status FROM quality_run ORDER BY suite") == [("rpu_batch", "error"),
                                                                               ("rpu_visit", "error")]
    text, data = _receipt(env, GOOD, "RPU_1.xml")
    assert "non effectué (incident technique" in text and data["quality"]["status"] == "error"
    assert _exported(env, GOOD) == 4
    assert not (env.sftp_root / GOOD / "inbox" / "RPU_1.xml").exists()


@pytest.mark.parametrize("blocking", [[], ["COMPLETENESS_DP"]])
def test_the_gate_runs_in_the_gate_task_with_analytics_off(intake_env, blocking):
    import os

    env = intake_env
    write_region(env.region_dir, quality={"blocking": blocking})
    env.drop(GOOD, "RPU_1.xml", rpu_file(_visits(4, DP=""), finess=GOOD))
    assert env.dag("demo_intake").test().state == "success"
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "False"
    [(status, held)] = env.sql("SELECT r.status, EXISTS (SELECT 1 FROM quality_quarantine q WHERE q.file_id = "
                               "r.file_id) FROM quality_run r WHERE r.suite = 'rpu_visit'")
    assert status == "failed" and held is bool(blocking)


def _tis(run) -> list[tuple]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(ti.task_id, ti.map_index, ti.state) for ti in session.query(TaskInstance).filter(
            TaskInstance.run_id == run.run_id, TaskInstance.dag_id == run.dag_id)]


def test_one_gate_task_after_the_chunks_judges_this_run_and_a_crashed_runs_batches(intake_env, tmp_path):
    """Chunks of 2 files: ceil(5 / 2) mapped loads, then one `gate` task judging every pending batch — the run's
    five and the one an earlier run left pending (loaded, then stopped before its gate), each on its own."""
    from rpu import intake

    env = intake_env
    write_region(env.region_dir, intake={"chunk_files": 2}, quality={"blocking": ["SEXE_DOMAIN"]})
    region = env.region()
    left = tmp_path / "left.xml"
    left.write_bytes(rpu_file(_visits(3), finess=OTHER, extract="05/11/2026 03:00:00"))
    crashed = intake.ingest_path(region, env.db_url, left, sender=OTHER, quality_gate=False)
    assert crashed["quality"] is None and _exported(env, OTHER) == 0       # pending: not exported
    env.drop(GOOD, "RPU_bad.xml", rpu_file(_bad(), finess=GOOD))
    for i in range(4):
        env.drop(OTHER, f"RPU_{i}.xml", rpu_file(_visits(5), finess=OTHER, extract=f"0{i + 1}/11/2026 03:00:00"))
    run = env.dag("demo_intake").test()
    assert run.state == "success"

    tis = _tis(run)
    assert sorted(m for t, m, _ in tis if t == "ingest") == [0, 1, 2]                # ceil(5 / 2) mapped loads
    assert [(m, st) for t, m, st in tis if t == "gate"] == [(-1, "success")]          # one gate
    per_file = env.sql("SELECT f.file_name, count(*) FROM quality_run r JOIN received_file f ON f.id = r.file_id "
                       "GROUP BY 1 ORDER BY 1")
    assert per_file == [("RPU_0.xml", 2), ("RPU_1.xml", 2), ("RPU_2.xml", 2), ("RPU_3.xml", 2),
                        ("RPU_bad.xml", 2), ("left.xml", 2)]
    assert env.sql("SELECT f.file_name FROM quality_quarantine q JOIN received_file f ON f.id = q.file_id") == [
        ("RPU_bad.xml",)]                                                            # that file only
    assert env.sql("SELECT count(*) FROM received_file WHERE gate_pending") == [(0,)]
    text, data = _receipt(env, GOOD, "RPU_bad.xml")                                 # written again by the gate
    assert "LOT EN QUARANTAINE (SEXE_DOMAIN)" in text and data["quality"]["quarantined"]
    assert "en cours" not in _receipt(env, OTHER, "RPU_0.xml")[0]
