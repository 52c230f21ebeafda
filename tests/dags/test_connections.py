"""rpu.connections.db_url: the regional database as its Airflow connection describes it, extras included —
checked against the suite's real PostgreSQL, which runs without TLS."""
from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from rpu import store
from rpu.connections import db_url


def _conn(monkeypatch, db: str, **extra) -> str:
    ci = conninfo_to_dict(db)
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TLS_DB", json.dumps({
        "conn_type": "postgres", "host": ci["host"], "port": int(ci["port"]), "login": ci["user"],
        "schema": ci["dbname"], "extra": extra}))
    return db_url("rpu_tls_db")


def test_sslmode_require_from_the_extras_is_honoured(airflow_db, db, monkeypatch):
    """`sslmode: require` in the connection's extras: a server without TLS is refused (the extras used to be
    dropped, and TLS to a regional database was silently off)."""
    url = _conn(monkeypatch, db, sslmode="require")
    assert conninfo_to_dict(url)["sslmode"] == "require"
    with pytest.raises(psycopg.OperationalError, match="(?i)ssl"):
        store.connect(url).close()
    with store.connection(_conn(monkeypatch, db, sslmode="disable")) as conn:   # and it connects without it
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_every_libpq_extra_reaches_the_connection(airflow_db, db, monkeypatch):
    url = _conn(monkeypatch, db, options="-c statement_timeout=1234", application_name="rpu-extras",
                connect_timeout=7, cursor="dictcursor")        # `cursor` is the hook's own: left out
    assert "cursor" not in conninfo_to_dict(url) and conninfo_to_dict(url)["connect_timeout"] == "7"
    with store.connection(url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        assert conn.execute("SHOW application_name").fetchone() == ("rpu-extras",)
    with pytest.raises(ValueError, match="rpu_tls_db.*not a PostgreSQL connection parameter"):
        _conn(monkeypatch, db, sslmood="require")
