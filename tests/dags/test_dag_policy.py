"""Policy over every generated DAG (one DagBag over the shipped region files), Astronomer-style."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rpu import dagset
from rpu.config import load_regions

PROJECT = Path(__file__).resolve().parents[2]
REGIONS = load_regions(PROJECT / "config" / "regions")


@pytest.fixture(scope="module")
def dagbag(shipped_dagbag):
    return shipped_dagbag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_region_has_its_dag_set(dagbag):
    assert {f"{r.code}_{kind}" for r in REGIONS for kind in SCHEDULES} <= set(dagbag.dag_ids)


SCHEDULES = {"intake": "intake_schedule", "send_invs": "send_invs_schedule", "export_ars": "export_ars_schedule",
             "send_atih": "send_atih_schedule",
             "watch": "watch_schedule"}


def _all_dags():
    return [(r, kind) for r in REGIONS for kind in SCHEDULES]


@pytest.mark.parametrize("region,kind", _all_dags(), ids=lambda x: getattr(x, "code", x))
def test_dag_policy(dagbag, region, kind):
    dag = dagbag.get_dag(f"{region.code}_{kind}")
    assert dag is not None
    assert dag.dag_id.startswith(f"{region.code}_")
    assert region.code in dag.tags and kind in dag.tags
    assert dag.doc_md and region.name in dag.doc_md
    assert dag.timetable.expression == dagset.schedule(region, dagset.kind(kind))
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == region.timezone
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.owner == region.team, task.task_id
        assert task.retries >= 1, f"{task.task_id} has no retries"
        assert task.doc_md or (task.python_callable.__doc__ if hasattr(task, "python_callable") else None), \
            f"{task.task_id} has no docstring"


def test_parsing_is_cheap_no_heavy_import_no_database():
    """Parse the DAG folder in a fresh interpreter: no pandas / Great Expectations / psycopg / paramiko import."""
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "heavy = [m for m in ('great_expectations', 'pandas', 'psycopg', 'paramiko', 'lxml') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    env = {**os.environ, "RPU_DATA_DIR": "/nonexistent"}
    env.pop("RPU_REGIONS_DIR", None)
    out = subprocess.run([sys.executable, "-c", code, str(PROJECT / "dags")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    [heavy] = [line[6:] for line in out.stdout.splitlines() if line.startswith("HEAVY=")]
    assert heavy == "", f"imported at parse time: {heavy}"


def test_every_region_file_has_its_dag_file_and_back():
    stubs = {p.stem.removeprefix("region_") for p in (PROJECT / "dags").glob("region_*.py")}
    assert stubs == {r.code for r in REGIONS}
    for code in stubs:
        assert (PROJECT / "dags" / f"region_{code}.py").read_text() == dagset.stub_text(code)


def test_a_broken_region_file_is_an_import_error_of_that_region_only(airflow_db, tmp_path, monkeypatch):
    import shutil

    import yaml
    from airflow.dag_processing.dagbag import DagBag

    dags = tmp_path / "dags"
    shutil.copytree(PROJECT / "dags", dags)
    regions = tmp_path / "regions"
    regions.mkdir()
    shutil.copy(PROJECT / "config" / "regions" / "demo.yaml", regions)
    broken = yaml.safe_load((PROJECT / "config" / "regions" / "demo.yaml").read_text(encoding="utf-8"))
    broken.update(code="brk", timezone="Europe/Nowhere")
    (regions / "brk.yaml").write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    (dags / "region_brk.py").write_text(dagset.stub_text("brk"))
    monkeypatch.setenv("RPU_REGIONS_DIR", str(regions))
    bag = DagBag(dag_folder=str(dags))
    assert list(bag.import_errors) == [str(dags / "region_brk.py")]
    message = bag.import_errors[str(dags / "region_brk.py")]
    assert "brk.yaml" in message and "Europe/Nowhere" in message
    assert {f"demo_{k}" for k in SCHEDULES} <= set(bag.dag_ids)
    assert not any(d.startswith("brk_") for d in bag.dag_ids)


KINDS = {"intake": "intake", "send_invs": "send", "export_ars": "send", "send_atih": "send", "watch": "watch",
         "reprise": "reprise"}


@pytest.mark.parametrize("region,kind", [(r, k) for r in REGIONS for k in KINDS], ids=lambda x: getattr(x, "code", x))
def test_failures_are_told_and_nothing_hangs(dagbag, region, kind):
    """Every DAG of a region mails its operations when a run fails; every task has a timeout and retries with
    exponential backoff; every run has a timeout — values from the region file (timeouts.<kind>)."""
    from datetime import timedelta

    from rpu_dags.notify import RegionFailureNotifier

    dag = dagbag.get_dag(f"{region.code}_{kind}")
    limits = region.timeouts[KINDS[kind]]
    assert isinstance(dag.on_failure_callback, RegionFailureNotifier) and dag.on_failure_callback.region == region
    assert dag.dagrun_timeout == timedelta(minutes=limits["dagrun_minutes"])
    for task in dag.tasks:
        assert task.execution_timeout == timedelta(minutes=limits["task_minutes"]), task.task_id
        assert task.retry_exponential_backoff == 2.0 and task.max_retry_delay == timedelta(
            minutes=region.retry_max_delay_minutes), task.task_id
    assert "mailed (in French) to the region's operations" in dag.doc_md


@pytest.mark.parametrize("region", REGIONS, ids=lambda r: r.code)
def test_the_daily_invs_send_has_a_deadline(dagbag, region):
    """"The daily InVS send has not succeeded by 08:00": a deadline alert, counted from when the run was queued
    (05:30 → 2 h 30), whose callback mails operations (rpu.ops.deadline_missed, tested in test_send_dags.py)."""
    from datetime import timedelta

    from airflow.sdk import DeadlineReference

    [alert] = dagbag.get_dag(f"{region.code}_send_invs").deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert region.sends.schedule("invs") == "30 5 * * *" and region.sends.invs_deadline == "08:00"
    assert alert.interval == timedelta(hours=2, minutes=30)
    assert alert.callback.path == "rpu.ops.deadline_missed"
    assert alert.callback.kwargs == {"region": region.code, "deadline": "08:00"}
    for kind in ("intake", "export_ars", "send_atih", "watch", "reprise"):
        assert not dagbag.get_dag(f"{region.code}_{kind}").deadline
