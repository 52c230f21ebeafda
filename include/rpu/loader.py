"""Check and load one received file, in ONE transaction: the intake's central step (rpu.intake and `rpu ingest`
call it). The checks (rpu.checks) stream each visit into a COPY of the stage table (rpu.store), then the
cancel-and-replace rule moves the stage into `visit`; rpu.store only persists, this module decides.
"""
from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

from rpu import faults, store
from rpu.checks import FileReport, check_file
from rpu.parse import ParserStopped
from rpu.problems import Problem

log = logging.getLogger(__name__)


class LoadOutcome:
    """What a load did: the file's status, its id, the days it applied and those it left to newer data."""

    def __init__(self, status: str, file_id: int, report, applied=(), kept=(), duplicate_of=None):
        self.status = status
        self.file_id = file_id
        self.report = report
        self.applied = list(applied)
        self.kept = list(kept)
        self.duplicate_of = duplicate_of


def record_rejection(conn, problem: Problem, *, name: str, sha256: str | None, size: int, sender: str | None,
                     archive_path=None, remote_path=None, received_at=None) -> int:
    """Record a file rejected outside rpu.checks (an inbox entry refused before reading it, a content the
    database refused): a received file like any other, with its reason; returns its id."""
    report = FileReport(file=name, accepted=False, errors=[problem])
    with conn.transaction():
        return store.insert_file(conn, report, status="rejected", name=name, sha256=sha256, size=size,
                                 sender=sender, archive_path=archive_path, remote_path=remote_path,
                                 received_at=received_at)


def load_file(conn, path: Path, *, region, sender: str | None, name: str, sha256: str, size: int,
              archive_path=None, remote_path=None, received_at=None, progress=None) -> LoadOutcome:
    """Check and load one file in ONE transaction: COPY into a stage, then cancel-and-replace per day.

    A crash at any point rolls everything back (the previous data stays); the content of a file already
    accepted from the same sender is recorded as a duplicate and changes nothing. A failure of the checks
    themselves on this content (a defect no rule names) raises ContentRefused (CHECK_FAILED): the caller
    rejects the file rather than retrying it forever."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        # inside a caller's transaction our block would only be a savepoint: refuse rather than half-commit
        raise RuntimeError("load_file needs a connection outside any transaction (autocommit mode)")
    common = dict(name=name, sha256=sha256, size=size, sender=sender, archive_path=archive_path,
                  remote_path=remote_path, received_at=received_at)
    with conn.transaction():
        dup = store.find_duplicate(conn, sha256, sender)
        if dup:
            fid = store.insert_file(conn, None, status="duplicate", duplicate_of=dup[0], **common)
            return LoadOutcome("duplicate", fid, None, duplicate_of=dup[0])
        store.create_stage(conn)
        try:
            with store.copy_stage(conn) as copy:
                sink = store.CopySink(copy)
                report = check_file(path, region, sender, sink, name=name, progress=progress)
                sink.flush()
        except (psycopg.Error, OSError, MemoryError, ParserStopped):
            raise
        except Exception as exc:
            log.error("checking %s failed (%s): file rejected as CHECK_FAILED", name, faults.code_location(exc))
            raise faults.ContentRefused(Problem(
                "CHECK_FAILED", "le contrôle de ce fichier a échoué sur un cas imprévu : il est conservé par "
                "l'ORU, qui corrigera le contrôle ; contactez-le avant de le renvoyer")) from None
        if not report.accepted:
            # nothing of a rejected file is stored but its record and reasons (the stage is dropped)
            conn.execute("TRUNCATE stage")
            fid = store.insert_file(conn, report, status="rejected", **common)
            return LoadOutcome("rejected", fid, report)
        # one load at a time per establishment; re-check duplicates under the lock (same file twice at once)
        store.lock_establishment(conn, report.etab)
        dup = store.find_duplicate(conn, sha256, sender or report.etab)
        if dup:
            fid = store.insert_file(conn, None, status="duplicate", duplicate_of=dup[0], **common)
            return LoadOutcome("duplicate", fid, None, duplicate_of=dup[0])
        fid = store.insert_file(conn, report, status="accepted", **common)
        applied, kept = store.apply_stage(conn, fid, report)
        return LoadOutcome("accepted", fid, report, applied, kept)
