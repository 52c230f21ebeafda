"""Faults told without patient data, and which side they are on: the file's content, or ours.

PostgreSQL quotes the offending value in its errors (COPY's context names the column *and its value*, a check
violation prints the whole row): such a text must never reach a task log, an XCom, a mail or a receipt. A
database error is told here by its SQLSTATE, its condition name and where it happened (our step, the COPY
line and column, the table, the constraint), never by its message.

Retry policy (docs/intake.md): a task is retried for our faults (database or SFTP down, disk full, a parser
killed), never for a file's content. A database error of the classes below is the content's (a value the
database cannot hold, a constraint it breaks): the file is rejected with DATABASE_REFUSED, not retried.
"""
from __future__ import annotations

import re
import traceback

from rpu.problems import Problem

# data exception, not-null and check violations, program limit exceeded (a value too big for its type)
CONTENT_SQLSTATE_CLASSES = ("22", "54")
CONTENT_SQLSTATES = frozenset({"23502", "23514"})
_COPY_CONTEXT = re.compile(r"COPY (\w+), line (\d+)(?:, column (\w+))?")


class DatabaseFault(RuntimeError):
    """A database failure of ours (retried), told by SQLSTATE and location only."""


class ContentRefused(Exception):
    """A file's content made a step fail that no rule of rpu.checks names: the file is rejected with `problem`."""

    def __init__(self, problem: Problem):
        super().__init__(f"[{problem.rule}]")
        self.problem = problem


def db_error(exc: BaseException | None):
    """The psycopg error behind `exc` (itself, its cause or context, or a SQLAlchemy wrapper's .orig), if any."""
    import psycopg

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.Error):
            return exc
        orig = getattr(exc, "orig", None)
        if isinstance(orig, psycopg.Error):
            return orig
        exc = exc.__cause__ or exc.__context__
    return None


def is_content_fault(exc) -> bool:
    """Is this database error the file's doing (a value the database refuses)?"""
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in CONTENT_SQLSTATE_CLASSES or state in CONTENT_SQLSTATES


def copy_position(exc) -> tuple[int | None, str | None]:
    """(row, column) of a failed COPY, from the error's context (the value it also quotes is left out)."""
    m = _COPY_CONTEXT.search(getattr(getattr(exc, "diag", None), "context", None) or "")
    return (int(m.group(2)), m.group(3)) if m else (None, None)


def describe_db_error(exc, step: str | None = None) -> str:
    """`SQLSTATE 22003 (NumericValueOutOfRange) in <step>, COPY row 12, column ordre, table …` — no value.

    An error without SQLSTATE is raised by the client library (connection refused or lost): its message names
    hosts and ports, never data, and is kept."""
    state = getattr(exc, "sqlstate", None)
    if not state:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return f"{type(exc).__name__}{': ' + first if first else ''}{' in ' + step if step else ''}"
    where = [f"in {step}"] if step else []
    row, column = copy_position(exc)
    if row is not None:
        where.append(f"COPY row {row}" + (f", column {column}" if column else ""))
    diag = getattr(exc, "diag", None)
    for label, attr in (("table", "table_name"), ("column", "column_name"), ("constraint", "constraint_name")):
        value = getattr(diag, attr, None) if diag is not None else None
        if value and re.fullmatch(r"\w{1,63}", value):   # identifiers of our schema only
            where.append(f"{label} {value}")
    return f"SQLSTATE {state} ({type(exc).__name__})" + (" " + ", ".join(where) if where else "")


def code_location(exc: BaseException) -> str:
    """Where an exception was raised (`module.py:123 in function`), for logs that must not quote its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    f = frames[-1]
    return f"{type(exc).__name__} at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}"


class IntakeFault(RuntimeError):
    """Some files of an intake chunk could not be processed for a fault of ours: the task is retried."""
