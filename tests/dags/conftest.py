"""Airflow for the DAG tests: a throw-away AIRFLOW_HOME with a migrated SQLite metadata DB, the project's
dags/ folder, and per-test region files, connections and SFTP account pointing at real local services."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from support.regions import pg_conn_json, write_region

PROJECT = Path(__file__).resolve().parents[2]
# Before Airflow is imported anywhere in this process: its configuration is read once, at import.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="rpu-test-airflow-")
os.environ.setdefault("AIRFLOW_HOME", _AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """`airflow db migrate` once per session (SQLite in the throw-away AIRFLOW_HOME)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   env=os.environ.copy())
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="module")
def shipped_dagbag(airflow_db):
    """One DagBag over dags/ with the shipped region files (config/regions)."""
    from airflow.dag_processing.dagbag import DagBag

    old = os.environ.pop("RPU_REGIONS_DIR", None)
    try:
        return DagBag(dag_folder=str(PROJECT / "dags"))
    finally:
        if old is not None:
            os.environ["RPU_REGIONS_DIR"] = old


class IntakeEnv:
    """Everything one intake test needs: region, database, SFTP root (as the concentrator sees it)."""

    def __init__(self, region_dir, db_url, sftp_root, data_dir, sftp_server, username, password):
        self.region_dir, self.db_url, self.sftp_root, self.data_dir = region_dir, db_url, sftp_root, data_dir
        self.sftp_server, self.username, self.password = sftp_server, username, password

    def region(self, code: str = "demo"):
        from rpu.config import load_region

        return load_region(self.region_dir / f"{code}.yaml")

    def drop(self, finess: str, name: str, data: bytes) -> Path:
        """Put a file into an establishment's inbox (as the hospital would)."""
        inbox = self.sftp_root / finess / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(data)
        return inbox / name

    def dag(self, dag_id: str):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(PROJECT / "dags"))
        assert not bag.import_errors, bag.import_errors
        return bag.get_dag(dag_id)

    def sql(self, query: str, *params):
        import psycopg

        with psycopg.connect(self.db_url) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def intake_env(airflow_db, fresh_db, sftp_server, tmp_path, monkeypatch) -> IntakeEnv:
    from rpu import store

    store.migrate(fresh_db)
    region_dir = tmp_path / "regions"
    write_region(region_dir)
    username, password = f"conc{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    sftp_root = sftp_server.add_user(username, password, tmp_path / "sftp")
    monkeypatch.setenv("RPU_REGIONS_DIR", str(region_dir))
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIRFLOW_CONN_RPU_DEMO_SFTP_INTAKE", sftp_server.airflow_conn_json(username, password))
    monkeypatch.setenv("AIRFLOW_CONN_RPU_DEMO_DB", pg_conn_json(fresh_db))
    return IntakeEnv(region_dir, fresh_db, sftp_root, tmp_path / "data", sftp_server, username, password)
