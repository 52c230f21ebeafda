"""rpu.visit_table: the generated stage and its move into `visit`, run on the suite's PostgreSQL."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from rpu import store
from rpu import visit_table as T
from rpu.loader import record_rejection
from rpu.problems import Problem

PG_TYPES = {"text": "text", "text[]": "text[]", "date": "date", "timestamp": "timestamp without time zone",
            "integer NOT NULL": "integer", "integer": "integer", "jsonb": "jsonb"}


def _statements(sql: str) -> list[str]:
    """The statements of a generated query (separated by `;` at the end of a line; comments kept)."""
    return [s for s in re.split(r";\s*\n", sql) if s.strip()]


def _columns(conn, table: str) -> list[tuple[str, str]]:
    return conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                        (table,)).fetchall()


@pytest.mark.parametrize("item,col,type_", [("CP", "cp", "text"), ("LISTE_DA", "da", "text[]"),
                                            ("LISTE_ACTES", "actes", "text[]"), ("NAISSANCE", "naissance", "date"),
                                            ("ENTREE", "entree", "timestamp"), ("TRANSPORT_PEC", "transport_pec", "text")])
def test_column_and_type_of_an_item(item, col, type_):
    assert (T.column(item), T.sql_type(item)) == (col, type_)


def test_the_stage_created_is_the_stage_columns_with_their_types(db):
    with store.connection(db) as conn, conn.transaction():
        conn.execute(T.create_stage_sql())
        cols = _columns(conn, "stage")
    assert [c for c, _ in cols] == list(T.STAGE_COLUMNS)
    declared = dict(T.HEAD + T.ITEM_COLUMNS + T.TAIL + T.REJECTION)
    assert all(PG_TYPES[declared[c]] == t for c, t in cols), cols


def test_the_visit_table_of_the_migrations_has_the_generated_item_types(db):
    with store.connection(db) as conn:
        cols = dict(_columns(conn, "visit"))
    assert {c: cols[c] for c, _ in T.ITEM_COLUMNS} == {c: PG_TYPES[t] for c, t in T.ITEM_COLUMNS}


def test_apply_stage_moves_the_applied_days_and_keeps_rejected_visits(db):
    """The generated apply_stage: visits of applied days replace the old ones, others stay in the stage, rejected
    visits land in rejected_visit with their reason."""
    d1, d2 = date(2026, 11, 1), date(2026, 11, 2)
    with store.connection(db) as conn:
        fid = record_rejection(conn, Problem("CHECK_FAILED", "x"), name="f.xml", sha256=None, size=1,
                               sender="990000127")
        with conn.transaction():
            conn.execute(T.create_stage_sql())
            for idx, day in ((1, d1), (2, d2)):
                conn.execute("INSERT INTO stage (idx, line, entry_date, entree, cp, da, actes, extra, raw_invalid, flags) "
                             "VALUES (%s, %s, %s, %s, 'X', '{}', '{}', '{}', '{}', '{}')",
                             (idx, idx * 10, day, datetime.combine(day, datetime.min.time())))
            conn.execute("INSERT INTO stage (idx, line, reject_rule, reject_message, raw) "
                         "VALUES (3, 30, 'ENTREE_MISSING', 'absente', '{}')")
            params = {"file_id": fid, "etab": "990000127", "ordre": 0, "applied": [d1]}
            for stmt in _statements(T.apply_stage_sql()):
                conn.execute(stmt, params)
        assert conn.execute("SELECT idx, entry_date, cp FROM visit").fetchall() == [(1, d1, "X")]
        assert conn.execute("SELECT idx, line, rule FROM rejected_visit").fetchall() == [(3, 30, "ENTREE_MISSING")]


def test_write_rewrites_the_committed_files_from_the_renderers(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "QUERIES_DIR", tmp_path)
    written = T.write()
    assert sorted(p.name for p in written) == ["apply_stage.sql", "create_stage.sql"]
    assert all(p.read_text(encoding="utf-8") == T.RENDERERS[p.stem]() for p in written)
    assert all(p.read_text(encoding="utf-8").startswith(T.GENERATED) for p in written)
