"""`rpu ingest FILE...`'s quality gate in a process of its own, forked before the loads.

The gate's fixed cost is Great Expectations' import (about 3 s, rpu.quality.gx). The command loads its files
first, then runs one gate over them (rpu.intake.gate_run): on two cores, that import can run beside the loads
rather than after them. The DAG's gate is a task of its own and does not use this.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle

from rpu import faults, intake, store
from rpu.config import Region
from rpu.quality import gate

log = logging.getLogger(__name__)


class GateAhead:
    """The quality gate of a run of loads (`rpu ingest FILE...`) in a process of its own, forked before the
    loads: it imports Great Expectations (about 3 s, its fixed cost) on the other core while this process
    loads the files, then, on `run()`, judges what is pending exactly as `gate_run` does in-process and hands
    back its summaries. Nothing pending: the child is stopped, nothing judged. Child gone (killed, out of
    memory) or fork impossible: the gate runs here (logged). Use as a context manager: the child never
    outlives the run."""

    def __init__(self, region: Region, db_url: str):
        self.region, self.db_url = region, db_url
        self._child = self._pipe = None
        try:
            ctx = multiprocessing.get_context("fork")
            self._pipe, theirs = ctx.Pipe()
            self._child = ctx.Process(target=_gate_child, args=(theirs, region, db_url), daemon=True)
            self._child.start()
            theirs.close()
        except (OSError, ValueError) as exc:
            log.warning("quality gate: no process of its own (%s): it will run in this one", type(exc).__name__)
            self._child = self._pipe = None

    def __enter__(self) -> GateAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self) -> list[dict]:
        with store.connection(self.db_url) as conn:
            pending = gate.pending_files(conn)
        if not pending or self._child is None:
            self.close()
            return intake.gate_run(self.region, self.db_url) if pending else []
        try:
            self._pipe.send("go")
            kind, value, records = self._pipe.recv()
        except (EOFError, OSError):
            log.error("quality gate: its process stopped (exit code %s): the gate runs again in this one",
                      self._child.exitcode)
            self.close()
            return intake.gate_run(self.region, self.db_url)
        self.close()
        for fields in records:     # the child's log lines, in this process's logging (handlers, task log)
            record = logging.makeLogRecord(fields)
            logging.getLogger(record.name).handle(record)
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._child is not None:
            self._child.join(timeout=1)
            if self._child.is_alive():
                self._child.kill()
                self._child.join()
            self._child = None


def _gate_child(pipe, region: Region, db_url: str) -> None:
    """GateAhead's process: imports the gate's engine, then judges on "go" (anything else, or the pipe closed:
    stops)."""
    code = 0
    records = _keep_log_records()
    try:
        try:
            gate.preload()
        except Exception as exc:  # noqa: BLE001 - the gate itself records why GX cannot run
            log.warning("quality gate: preloading Great Expectations failed (%s)", type(exc).__name__)
        try:
            go = pipe.recv() == "go"
        except (EOFError, OSError):
            go = False
        if go:
            try:
                result = ("ok", intake.gate_run(region, db_url))
            except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
                result = ("error", exc if _picklable(exc) else
                          faults.DatabaseFault(f"quality gate: {type(exc).__name__}"))
            pipe.send(result + (records,))
    except BaseException:  # noqa: BLE001 - never let the fork run the parent's code past this point
        code = 1
    finally:
        pipe.close()
        os._exit(code)


def _keep_log_records() -> list[dict]:
    """In the child: its log records kept, as their plain fields (message formatted, arguments dropped: always
    picklable), to be handed to the parent instead of written by the handlers it inherited (the parent's, which
    would write them twice or nowhere)."""
    records: list[dict] = []
    plain = (str, int, float, bool, type(None))

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            fields = {k: v for k, v in vars(record).items() if isinstance(v, plain)}
            fields.update(msg=record.getMessage(), args=None, exc_info=None, exc_text=(
                logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text))
            records.append(fields)

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(Keep())
    return records


def _picklable(value) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:  # noqa: BLE001
        return False
