"""Secrets come from Airflow connections (or the environment), never from code or region files."""
from __future__ import annotations


def db_url(conn_id: str) -> str:
    """libpq URL of the regional database behind an Airflow `postgres` connection, with every libpq parameter
    of its extras (sslmode, sslrootcert, sslcert, sslkey, options, connect_timeout, target_session_attrs…):
    TLS to a regional database is what the connection says, never silently off. Extras that only the
    provider's hook understands (cursor, iam, aws_conn_id…) are left out, as PostgresHook does; an extra libpq
    does not know is an error naming it."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    hook = PostgresHook(postgres_conn_id=conn_id)
    c = hook.connection
    login, password, port = c.login, c.password, c.port
    if c.extra_dejson.get("iam", False):   # a short-lived token for the password, as the hook's get_conn does
        login, password, port = hook.get_iam_token(c)
    params = {"host": c.host or "localhost", "port": port or 5432, "user": login or None, "password": password or None,
              "dbname": c.schema or None}
    params |= {k: v for k, v in c.extra_dejson.items() if k not in hook.ignored_extra_options}
    try:
        return make_conninfo(**{k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()
                                if v is not None and v != ""})
    except ProgrammingError as exc:
        raise ValueError(f"Airflow connection {conn_id!r}: an extra is not a PostgreSQL connection parameter: {exc}") \
            from exc


def find_db_url(conn_id: str) -> str | None:
    """`db_url` of an Airflow connection looked up as Airflow does (AIRFLOW_CONN_<ID> variable, secrets backend,
    metadata database), or None when none of them defines it."""
    from airflow.sdk.exceptions import AirflowNotFoundException   # here: the `rpu` commands that need no database
                                                                  # do not import Airflow
    try:
        return db_url(conn_id)
    except AirflowNotFoundException:
        return None
