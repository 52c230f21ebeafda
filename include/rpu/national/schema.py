"""The national database: its migrations (include/sql/national/migrations, recorded in national_schema_migration,
so it may share a PostgreSQL database with a region's schema) and its named queries."""
from __future__ import annotations

from functools import lru_cache

from rpu import store

DIR = store.SQL_DIR / "national"
MIGRATION_TABLE = "national_schema_migration"


def migrate(db_url: str) -> list[str]:
    """Apply the national migrations not yet applied; returns their names."""
    return store.migrate(db_url, directory=DIR / "migrations", table=MIGRATION_TABLE)


@lru_cache(maxsize=None)
def query(name: str) -> str:
    """The text of include/sql/national/queries/<name>.sql."""
    return (DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def rows(cur) -> list[dict]:
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]
