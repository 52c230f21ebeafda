"""The database of an `rpu` command without --db (rpu.cli.common): $RPU_DB_URL, else the region's Airflow
connection found as Airflow finds it (here an AIRFLOW_CONN_* variable), on the suite's real PostgreSQL; the same
for the national database; --db first; a clear refusal naming what was tried when nothing is found.
Each command runs as operators run it: the installed `rpu` script, its own process and environment."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from support.regions import pg_conn_json, write_region

RPU = Path(sys.executable).parent / "rpu"
NOWHERE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"    # nothing listens on port 1


@pytest.fixture
def env(tmp_path):
    """An environment with no database anywhere: a scratch AIRFLOW_HOME, one region (demo) in RPU_REGIONS_DIR."""
    write_region(tmp_path / "regions")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RPU_", "PG"))}
    return base | {"AIRFLOW_HOME": tempfile.mkdtemp(prefix="rpu-test-airflow-", dir=tmp_path),
                   "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "RPU_REGIONS_DIR": str(tmp_path / "regions")}


def rpu(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RPU), *args], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _tables(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_the_regions_airflow_connection_by_default(env, fresh_db):
    env["AIRFLOW_CONN_RPU_DEMO_DB"] = pg_conn_json(fresh_db)
    r = rpu(env, "db", "migrate")                    # no --db, no --region: the only region's connection
    assert r.returncode == 0, r.stderr
    assert "applied: 001_intake.sql" in r.stdout and "received_file" in _tables(fresh_db)
    r = rpu(env, "status", "--region", "demo", "--json")
    assert r.returncode == 0, r.stderr
    assert '"finess": "990000127"' in r.stdout


def test_rpu_db_url_before_the_connection_and_db_before_both(env, fresh_db):
    env["AIRFLOW_CONN_RPU_DEMO_DB"] = pg_conn_json(NOWHERE)    # would fail: never tried
    env["RPU_DB_URL"] = fresh_db
    r = rpu(env, "db", "migrate", "--region", "demo")
    assert r.returncode == 0, r.stderr
    assert "received_file" in _tables(fresh_db)
    env["RPU_DB_URL"] = NOWHERE
    r = rpu(env, "ledger", "--db", fresh_db, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = rpu(env, "ledger", "--json")                  # RPU_DB_URL, nowhere: fails on it, not on anything else
    assert r.returncode != 0 and "127.0.0.1" in r.stderr and "port 1" in r.stderr


def test_no_database_anywhere_is_refused_naming_what_was_tried(env):
    env["AIRFLOW_CONN_RPU_OTHER_DB"] = pg_conn_json(make_conninfo(NOWHERE, password="s3cret-pw"))
    r = rpu(env, "status")
    assert r.returncode == 2 and not r.stdout
    message = r.stderr.strip().splitlines()[-1]
    assert message == ("rpu: no database for region demo: no --db, no RPU_DB_URL variable, and no Airflow "
                       "connection 'rpu_demo_db' (looked up as Airflow does: the AIRFLOW_CONN_RPU_DEMO_DB variable, "
                       "the secrets backend, the metadata database)")
    assert "s3cret" not in r.stderr


def test_several_regions_need_region(env, tmp_path):
    write_region(tmp_path / "regions", code="autre", name="Autre", atih={})    # (the demo's geo table: demo's only)
    r = rpu(env, "status", "--db", NOWHERE)
    assert r.returncode == 2 and "--region is required: 2 regions in the region files (autre, demo)" in r.stderr


def test_the_national_database_by_default(env, fresh_db):
    env["AIRFLOW_CONN_RPU_NATIONAL_DB"] = pg_conn_json(fresh_db)
    env["RPU_DB_URL"] = NOWHERE                       # the regional variable: not the national database
    r = rpu(env, "db", "migrate", "--national")
    assert r.returncode == 0, r.stderr
    assert "applied: 001_national.sql" in r.stdout
    del env["AIRFLOW_CONN_RPU_NATIONAL_DB"]
    env["RPU_NATIONAL_DB_URL"] = fresh_db
    r = rpu(env, "report", "national", "--year", "2026", "--format", "csv")
    assert r.returncode == 0, r.stderr
    del env["RPU_NATIONAL_DB_URL"]
    r = rpu(env, "report", "national", "--year", "2026")
    assert r.returncode == 2 and "no database for the national (ATIH) side" in r.stderr
    assert "RPU_NATIONAL_DB_URL" in r.stderr and "'rpu_national_db'" in r.stderr


def test_the_connection_url_keeps_its_parameters(env, fresh_db):
    """The connection's libpq parameters reach the command (rpu.connections.db_url): sslmode=disable here."""
    ci = conninfo_to_dict(fresh_db)
    env["AIRFLOW_CONN_RPU_DEMO_DB"] = (f"postgres://{ci['user']}@{ci['host']}:{ci['port']}/{ci['dbname']}"
                                       "?sslmode=disable")
    r = rpu(env, "db", "migrate")
    assert r.returncode == 0, r.stderr
