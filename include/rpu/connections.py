"""Secrets come from Airflow connections (or the environment), never from code or region files."""
from __future__ import annotations


def db_url(conn_id: str) -> str:
    """libpq URL of the regional database behind an Airflow `postgres` connection."""
    from airflow.sdk import Connection
    from psycopg.conninfo import make_conninfo

    c = Connection.get(conn_id)
    return make_conninfo(host=c.host or "localhost", port=c.port or 5432, user=c.login or None,
                         password=c.password or None, dbname=c.schema or None)
