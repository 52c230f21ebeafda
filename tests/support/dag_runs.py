"""`run_form`: dag.test() of a DAG with a trigger form (required Params), whose failed runs come back failed."""
from __future__ import annotations


def run_form(dag, conf: dict):
    """dag.test(run_conf=conf), and the run read back when it failed.

    Airflow 3.3's dag.test() builds the context of a failed run's on_failure_callback from the serialized DAG,
    whose required Params it validates without the run's conf: it raises once every task is done and the run
    marked failed, before committing that state (the DAG processor, which runs the callback in production, uses
    the parsed DAG). Read the run back, failed; a conf refused before any run is re-raised."""
    try:
        return dag.test(run_conf=conf)
    except ValueError as exc:
        import traceback

        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState

        if "execute_dag_callbacks" not in "".join(traceback.format_tb(exc.__traceback__)):
            raise
        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).order_by(DagRun.id.desc()).first()
            session.expunge(run)
        run.state = DagRunState.FAILED
        return run
