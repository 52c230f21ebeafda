"""Policy over every DAG of a DagBag, Astronomer-style: the shipped regions plus the 18 regions of France
provisioned by `rpu region add` (support.regions.dag_set), parsed once; each DAG the bag holds is a test case,
so a new kind of DAG is checked without being listed here."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rpu import dagset
from rpu.config import load_regions
from support.regions import FRANCE, PROJECT, SHIPPED_REGIONS, dag_set

# Built at collection: the test cases are the DagBag's DAGs.
_BASE = Path(tempfile.mkdtemp(prefix="rpu-test-dagset-"))
atexit.register(shutil.rmtree, _BASE, True)
SET = dag_set(_BASE)
DAG_IDS = sorted(SET.bag.dag_ids)
# Which `timeouts.<group>` of the region file each kind of DAG takes (rpu.dagset), and the national reception's.
TIMEOUT_GROUP = {k.name: k.timeouts for k in dagset.KINDS} | {"reception": "intake"}


def _prefix(dag) -> str:
    """A region's DAG ids start with its code; the national DAG's with `syrius` (the ATIH platform's name)."""
    return f"{SET.region_of(dag).code}_" if SET.is_regional(dag) else "syrius_"


def _kind(dag) -> str:
    return dag.dag_id.removeprefix(_prefix(dag))


def _schedule(region, kind: str) -> str:
    """The cron a scheduled kind of DAG takes from its region file."""
    if kind == "reception":                             # the national DAG: the ATIH side's "intake"
        return region.intake.schedule
    return dagset.schedule(region, dagset.kind(kind))


def test_no_import_errors():
    assert SET.bag.import_errors == {}


def test_every_region_has_the_same_full_dag_set():
    """Every region of the set (shipped and generated) has one DAG per factory, the same kinds in every region."""
    import rpu_dags

    shipped = {p.stem for p in SHIPPED_REGIONS.glob("*.yaml")}
    assert set(SET.by_code) == shipped | {code for code, _, _ in FRANCE} and len(SET.by_code) == len(shipped) + 18
    kinds: dict[str, set[str]] = {code: set() for code in SET.by_code}
    national = [dag.dag_id for dag in SET.bag.dags.values() if not SET.is_regional(dag)]
    assert national == ["syrius_reception"]
    for dag in filter(SET.is_regional, SET.bag.dags.values()):
        kinds[SET.region_of(dag).code].add(_kind(dag))
    assert len({frozenset(k) for k in kinds.values()}) == 1, kinds
    assert len(kinds["demo"]) == len(rpu_dags.factories()) and "reprise" in kinds["demo"]
    assert len(DAG_IDS) == len(SET.by_code) * len(rpu_dags.factories()) + len(national)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_policy(dag_id):
    from rpu_dags.common import START
    from rpu_dags.notify import RegionFailureNotifier

    dag = SET.bag.dags[dag_id]
    region = SET.region_of(dag)                         # from the DAG file that built it
    kind = _kind(dag)
    assert dag_id == _prefix(dag) + kind and kind in TIMEOUT_GROUP, "a DAG's id is <region code>_<kind>"
    assert {region.code, "rpu", kind} <= set(dag.tags)
    assert dag.doc_md and region.name in dag.doc_md
    assert "mailed (in French) to the region's operations" in dag.doc_md
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.start_date == START and dag.start_date < datetime.now(timezone.utc)   # the same, past start
    if dag.params:                                      # triggered from its form only
        assert type(dag.timetable).__name__ == "NullTimetable" and not dag.timetable.can_be_scheduled
    else:
        assert dag.timetable.expression == _schedule(region, kind)
        assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == region.timezone
    assert isinstance(dag.on_failure_callback, RegionFailureNotifier) and dag.on_failure_callback.region == region
    limits = region.timeouts[TIMEOUT_GROUP[kind]]
    assert dag.dagrun_timeout == timedelta(minutes=limits["dagrun_minutes"])
    assert dag.tasks
    pools = dagset.task_pools(region.code, dagset.kind(kind)) if SET.is_regional(dag) else {}
    assert {t.task_id: t.pool for t in dag.tasks if t.pool != "default_pool"} == pools
    for task in dag.tasks:
        assert task.owner == region.team, task.task_id
        assert task.retries == region.retries and task.retries > 0, task.task_id
        assert task.retry_delay == timedelta(minutes=region.retry_delay_minutes), task.task_id
        assert task.retry_exponential_backoff == 2.0, task.task_id
        assert task.max_retry_delay == timedelta(minutes=region.retry_max_delay_minutes), task.task_id
        assert task.execution_timeout == timedelta(minutes=limits["task_minutes"]), task.task_id
        assert task.doc_md or getattr(getattr(task, "python_callable", None), "__doc__", None), \
            f"{task.task_id} has no docstring"


def test_the_tasks_loading_shared_servers_take_their_pools():
    """The region's PostgreSQL (ingest, the sends' queries, the reprise), each national SFTP server (the sends'
    uploads): pools that `rpu pools sync` creates for exactly these names."""
    from rpu import pools

    get = SET.bag.dags.__getitem__
    assert get("ara_intake").get_task("ingest").pool == "rpu_db_ara"
    assert get("ara_send_invs").get_task("plan").pool == "rpu_db_ara"
    assert get("ara_reprise").get_task("send").pool == "rpu_db_ara"
    assert {get(f"guy_{k}").get_task("send").pool for k in ("send_invs", "send_atih", "export_ars")} == \
        {"rpu_sftp_invs", "rpu_sftp_atih", "rpu_sftp_ars"}
    used = {t.pool for d in SET.bag.dags.values() for t in d.tasks} - {"default_pool"}
    assert used <= set(pools.desired_pools(SET.by_code.values()))


def test_the_generated_regions_settings_reach_their_dags():
    """The settings some generated regions have of their own (support.regions.OWN_SETTINGS) are in their DAGs:
    a factory reading a default instead of its region's value fails here even where the policy's two sides agree."""
    get = SET.bag.dags.__getitem__      # (get_dag asks the metadata database)
    assert get("ara_intake").dagrun_timeout == timedelta(minutes=101)
    assert get("ara_send_atih").get_task("send").execution_timeout == timedelta(minutes=12)
    assert get("ara_reprise").dagrun_timeout == timedelta(minutes=104)
    assert {t.owner for t in get("guy_watch").tasks} == {"equipe-guyane"}
    assert {t.retries for t in get("lre_intake").tasks} == {4}
    assert get("cor_intake").timetable.expression == "*/5 * * * *"
    assert get("cor_export_ars").timetable.expression == "0 7 * * 2"
    assert get("myt_watch").timetable.expression == "30 7 * * *"
    assert get("myt_send_atih").timetable.expression == "0 6 * * 1"      # atih.frequency: weekly
    assert get("demo_send_atih").timetable.expression == "0 6 2 * *"     # monthly, the default


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
    assert stubs == {r.code for r in load_regions(SHIPPED_REGIONS)}
    for code in stubs:
        assert (PROJECT / "dags" / f"region_{code}.py").read_text() == dagset.stub_text(code)


@pytest.mark.parametrize("code", sorted(SET.by_code))
def test_the_daily_invs_send_has_a_deadline(code):
    """"The daily InVS send has not succeeded by 08:00": a deadline alert, counted from when the run was queued
    (05:30 → 2 h 30), whose callback mails operations (rpu.ops.deadline_missed, tested in test_send_dags.py).
    A region may have none (`schedules.send_invs_deadline: none`); no other DAG has one."""
    from airflow.sdk import DeadlineReference

    region = SET.by_code[code]
    if code == "cor":
        assert region.sends.invs_deadline is None and not SET.bag.dags["cor_send_invs"].deadline
    else:
        [alert] = SET.bag.dags[f"{code}_send_invs"].deadline
        assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
        assert region.sends.schedule("invs") == "30 5 * * *" and region.sends.invs_deadline == "08:00"
        assert alert.interval == timedelta(hours=2, minutes=30)
        assert alert.callback.path == "rpu.ops.deadline_missed"
        assert alert.callback.kwargs == {"region": code, "deadline": "08:00"}
    others = [d for d in SET.bag.dags.values() if SET.region_of(d).code == code and _kind(d) != "send_invs"]
    assert others and not any(d.deadline for d in others)
