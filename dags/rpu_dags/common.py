"""What every factory shares: `region_dag`, the @dag of one DAG of a region with the policy they all follow (id,
tags and schedule from rpu.dagset; owner, retries, timeouts, one run at a time, no catch-up, failure mail)."""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, dag

from rpu import dagset
from rpu.config import Region
from rpu.dagset import DagKind
from rpu_dags.notify import RegionFailureNotifier

START = pendulum.datetime(2026, 1, 1)
# Retries wait retry_delay, then twice as long each time (capped by retry_max_delay_minutes): a server down for
# a while is not hammered, a short blip is retried soon.
BACKOFF = 2.0


def default_args(region: Region, kind: str) -> dict:
    """Owner (the region's team), retries with exponential backoff and the task timeout of a kind of DAG
    (`timeouts.<kind>.task_minutes`): a hung transfer fails and is retried instead of blocking every later run."""
    return {"owner": region.team, "retries": region.retries,
            "retry_delay": timedelta(minutes=region.retry_delay_minutes),
            "retry_exponential_backoff": BACKOFF,
            "max_retry_delay": timedelta(minutes=region.retry_max_delay_minutes),
            "execution_timeout": timedelta(minutes=region.timeouts[kind]["task_minutes"])}


def dag_args(region: Region, kind: str) -> dict:
    """The arguments every DAG of a region takes: one run at a time, a run timeout (`timeouts.<kind>.
    dagrun_minutes`), and a French mail to the region's operations when a run fails (rpu_dags.notify)."""
    return {"start_date": START.in_timezone(region.timezone), "catchup": False, "max_active_runs": 1,
            "default_args": default_args(region, kind),
            "dagrun_timeout": timedelta(minutes=region.timeouts[kind]["dagrun_minutes"]),
            "on_failure_callback": RegionFailureNotifier(region)}


def failure_doc(region: Region, kind: str) -> str:
    """The lines of a DAG's doc_md about failures, timeouts and who is told."""
    t = region.timeouts[kind]
    where = region.source.name if region.source else "the settings file"    # config/regions/<code>.yaml, national.yaml
    ops = ", ".join(region.ops_emails) or f"nobody: no operations address in {where} (alerts.ops)"
    return (f"**Failures**: a task is retried {region.retries} time(s), from {region.retry_delay_minutes:g} min, "
            f"the delay doubling each time (at most {region.retry_max_delay_minutes:g} min); a task running longer "
            f"than {t['task_minutes']:g} min is failed (then retried), a run longer than {t['dagrun_minutes']:g} min "
            f"is failed. A failed run is mailed (in French) to the region's operations: {ops}.")


def region_dag(region: Region, kind: DagKind | str, **overrides):
    """The @dag decorator of the region's DAG of `kind`: its id (`<code>_<kind>`), tags and schedule (a cron of the
    region file in the region's time zone, none for a triggered DAG) from rpu.dagset, and the policy of `dag_args`
    (timeouts of the kind's `timeouts.<kind>`); `overrides` (description, doc_md, params, deadline…) complete or
    replace them. No `access_control`: who may trigger a DAG is granted by `rpu roles sync` (rpu.dagset.
    trigger_role), so the DAGs import whatever roles exist."""
    kind = dagset.kind(kind) if isinstance(kind, str) else kind
    cron = dagset.schedule(region, kind)
    args = dict(dag_id=dagset.dag_id(region.code, kind),
                schedule=CronTriggerTimetable(cron, timezone=region.timezone) if cron else None,
                tags=dagset.tags(region.code, kind), **dag_args(region, kind.timeouts))
    return dag(**{**args, **overrides})
