"""rpu.faults on real PostgreSQL errors: which side a fault is on (the file's content or ours), and how it is told
— by SQLSTATE, step and place, never by the value PostgreSQL quotes."""
from __future__ import annotations

import psycopg
import pytest

from rpu import faults
from rpu.problems import Problem

SECRET = "ROUSSET-LES-VIGNES"      # a patient's commune: in PostgreSQL's message, never in ours


def _error(db: str, *statements: str, copy: bytes | None = None) -> psycopg.Error:
    """The psycopg error the last statement (or a COPY of `copy` into t) raises."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (n smallint, commune text, CONSTRAINT t_n_positive CHECK (n > 0), "
                     "CONSTRAINT t_commune_key UNIQUE (commune))")
        with pytest.raises(psycopg.Error) as info:
            for sql in statements:
                conn.execute(sql)
            if copy is not None:
                with conn.cursor().copy("COPY t (n, commune) FROM STDIN") as cp:
                    cp.write(copy)
        return info.value


def test_a_check_violation_is_the_content_told_by_constraint_not_by_row(fresh_db):
    exc = _error(fresh_db, f"INSERT INTO t VALUES (-1, '{SECRET}')")
    assert SECRET in str(exc)                              # PostgreSQL prints the failing row…
    assert faults.is_content_fault(exc)
    text = faults.describe_db_error(exc, "load")
    assert text == "SQLSTATE 23514 (CheckViolation) in load, table t, constraint t_n_positive"   # …we do not
    assert faults.copy_position(exc) == (None, None)


def test_a_value_too_big_in_a_copy_is_the_content_told_by_row_and_column(fresh_db):
    exc = _error(fresh_db, copy=f"1\tA\n2\tB\n99999\t{SECRET}\n".encode())
    assert faults.is_content_fault(exc) and exc.sqlstate == "22003"
    assert faults.copy_position(exc) == (3, "n")
    text = faults.describe_db_error(exc, "load")
    assert text == "SQLSTATE 22003 (NumericValueOutOfRange) in load, COPY row 3, column n"
    assert SECRET not in text and "99999" not in text


def test_a_unique_violation_is_ours_not_the_content(fresh_db):
    exc = _error(fresh_db, f"INSERT INTO t VALUES (1, '{SECRET}')", f"INSERT INTO t VALUES (2, '{SECRET}')")
    assert exc.sqlstate == "23505" and not faults.is_content_fault(exc)
    assert SECRET in str(exc)
    assert faults.describe_db_error(exc) == "SQLSTATE 23505 (UniqueViolation) table t, constraint t_commune_key"


def test_an_unreachable_server_is_ours_and_told_by_its_message():
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    exc = info.value
    assert exc.sqlstate is None and not faults.is_content_fault(exc)
    text = faults.describe_db_error(exc, "connect")
    assert text.startswith("OperationalError: ") and text.endswith(" in connect")
    assert "127.0.0.1" in text and "\n" not in text


def test_the_database_error_is_found_behind_causes_and_wrappers(fresh_db):
    exc = _error(fresh_db, "SELECT 1/0")
    assert exc.sqlstate == "22012"
    try:
        try:
            raise exc
        except psycopg.Error as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        assert faults.db_error(outer) is exc

    class Wrapper(Exception):        # what SQLAlchemy raises: the driver's error as .orig
        orig = exc

    assert faults.db_error(Wrapper("wrapped")) is exc
    looped = ValueError("a")
    looped.__context__ = KeyError("b")
    looped.__context__.__context__ = looped      # a cycle ends the walk
    assert faults.db_error(looped) is None
    assert faults.db_error(None) is None


def test_code_location_names_the_place_not_the_message():
    def parse_commune():
        raise ValueError(f"cannot read {SECRET}")

    with pytest.raises(ValueError) as info:
        parse_commune()
    where = faults.code_location(info.value)
    assert where.startswith("ValueError at test_faults.py:") and where.endswith(" in parse_commune")
    assert SECRET not in where
    assert faults.code_location(ValueError(SECRET)) == "ValueError"    # never raised: no traceback


def test_content_refused_carries_its_problem_and_says_only_its_rule():
    problem = Problem("DATABASE_REFUSED", f"valeur refusée : {SECRET}")
    exc = faults.ContentRefused(problem)
    assert exc.problem is problem and str(exc) == "[DATABASE_REFUSED]"
