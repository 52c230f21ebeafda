"""The Airflow notifier of a region's DAGs: a failed run is mailed to the region's operations (`alerts.ops`)."""
from __future__ import annotations

from airflow.sdk import BaseNotifier

from rpu.config import Region


class RegionFailureNotifier(BaseNotifier):
    """on_failure_callback of every DAG of a region: one French mail (template `dag_failed`, rendered and sent by
    rpu.ops through rpu.mail and the outbox) naming the DAG, the run, the failed task and the reason — no
    patient data. The mail is kept in the outbox while the SMTP server is down."""

    def __init__(self, region: Region):
        super().__init__()
        self.region = region

    def render_template_fields(self, context, jinja_env=None) -> None:
        # No Airflow-templated field: the mail is rendered by rpu.mail. Skipping this also spares asking the
        # context's DAG for a Jinja environment, which the serialized DAG of dag.test() does not have.
        return None

    def notify(self, context) -> None:
        from rpu import ops

        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        run = context.get("dag_run")
        exc = context.get("exception")
        ops.tell_failure(
            self.region,
            dag_id=getattr(dag, "dag_id", None) or getattr(run, "dag_id", None) or getattr(ti, "dag_id", "?"),
            run_id=context.get("run_id") or getattr(run, "run_id", None),
            logical_date=context.get("logical_date") or getattr(run, "logical_date", None),
            reason=context.get("reason") or "task_failure",
            task=getattr(ti, "task_id", None), map_index=getattr(ti, "map_index", None),
            rendered_map_index=getattr(ti, "rendered_map_index", None), try_number=getattr(ti, "try_number", None),
            error=ops.safe_error(exc if isinstance(exc, BaseException) else None),
            log_url=getattr(ti, "log_url", None))
