"""Shared helpers of the benchmark scripts (bench/ingest.py, later bench/export.py).

- `bench_database(db_url, keep=...)`: a fresh, migrated database, on a PostgreSQL of our own (started exactly
  as the tests start theirs: `PostgresServer` in a temp dir, fast=True) or on the server of `db_url`.
- `run_in_child(func, ...)`: run one measure in its own `multiprocessing` child (spawn), so that its peak RSS,
  read in the child at the end, owes nothing to what earlier measures allocated. The child reports both
  `ru_maxrss` and /proc's VmHWM; `peak_rss_mb` is VmHWM, because Linux keeps ru_maxrss across execve, so a
  spawned child's ru_maxrss starts at the parent's RSS at fork time (see `ru_maxrss_mb`).
- `run_measured(func, ..., server_cpu=db.server_cpu_s)`: `run_in_child` plus the CPU our own PostgreSQL used
  meanwhile and how many CPUs *other* processes kept busy (a noisy machine inflates wall times).
- `exit_on_sigterm()`: turn SIGTERM into SystemExit so that every `finally`/`with` cleanup runs.
- `print_table(...)`, `emit_json(...)`: the human table, then the machine-readable last line.

Progress messages go to stderr (`note`); stdout carries only the table and, as its last line, the JSON.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

BENCH_DB_PREFIX = "rpu_bench_"


def note(msg: str) -> None:
    """A progress line on stderr (stdout is kept for the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit in the main process, so cleanups run as for Ctrl-C."""
    def handler(signum, frame):  # noqa: ARG001
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- database ---------------------------------------------------------------------------------------------

def url_with_dbname(url: str, dbname: str) -> str:
    """The same libpq URL (host, port, user, password, query parameters) pointing at database `dbname`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"--db expects a postgresql:// URL, not {url!r}")
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


@dataclass
class BenchDatabase:
    url: str            # the benchmark database
    name: str
    server_url: str     # a maintenance database on the same server (to create/drop databases)
    own_server: bool    # True when we started PostgreSQL ourselves
    where: str          # for the report: "own PostgreSQL …" or the server's host:port
    server_pid: int | None = None   # postmaster of our own server

    def reset(self) -> None:
        """Back to a freshly migrated state: every intake table emptied, identities restarted."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'schema_migration'")]
            if tables:
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        self.checkpoint()

    def checkpoint(self) -> None:
        """Flush dirty buffers before a timed step so a checkpoint triggered by the previous step does not land
        in it (best effort: needs superuser or pg_checkpoint, which --db may not grant)."""
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        except psycopg.Error:
            pass

    def server_cpu_s(self) -> float | None:
        """CPU seconds used so far by our own PostgreSQL (postmaster, its live children, and the children it has
        reaped, e.g. the backend of a closed connection); None on a --db server. Take differences."""
        if self.server_pid is None:
            return None
        return process_tree_cpu_s(self.server_pid)

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]


def _create_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def bench_database(db_url: str | None = None, *, keep: bool = False, migrate: bool = True,
                   prefix: str = BENCH_DB_PREFIX) -> Iterator[BenchDatabase]:
    """A fresh database `<prefix><random>`, migrated, removed on every exit path.

    Without `db_url`: our own PostgreSQL (`PostgresServer(tmp, fast=True)`), stopped at the end; its temp dir is
    removed unless `keep` (then the stopped cluster stays for inspection). With `db_url`: the database is created
    on that URL's server and dropped at the end unless `keep`."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    server = None
    base: Path | None = None
    created = False
    try:
        if db_url is None:
            from rpu_dev.localservices import PostgresServer

            base = Path(tempfile.mkdtemp(prefix="rpu-bench-pg-"))
            server = PostgresServer(base, fast=True)
            note(f"starting PostgreSQL in {base} …")
            server.start()
            server_url = server.url()
            url = server.create_database(name)
            where = f"own PostgreSQL (PostgresServer fast=True, {server.bindir})"
        else:
            server_url = db_url
            url = url_with_dbname(db_url, name)
            _create_database(server_url, name)
            parts = urlsplit(db_url)
            where = f"{parts.hostname or 'local socket'}:{parts.port or 5432}"
        created = True
        if migrate:
            from rpu import store

            store.migrate(url)
        yield BenchDatabase(url=url, name=name, server_url=server_url, own_server=server is not None, where=where,
                            server_pid=server.pid if server is not None else None)
    finally:
        try:
            if created and not keep:
                try:
                    _drop_database(server_url, name)
                except Exception as exc:  # noqa: BLE001 - cleanup goes on
                    note(f"could not drop database {name}: {exc}")
            elif created:
                note(f"kept database {name}" + ("" if server else f" on {where}"))
        finally:
            if server is not None:
                server.stop()
            if base is not None:
                if keep:
                    note(f"kept the (stopped) cluster in {base}; restart it with "
                         f"pg_ctl -D {base / 'data'} start")
                else:
                    shutil.rmtree(base, ignore_errors=True)


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()   # fields from #3 (state) on; the name may hold spaces


def process_tree_cpu_s(pid: int) -> float | None:
    """user+system CPU of `pid`, of its reaped children (cutime/cstime) and of its live direct children."""
    tick = os.sysconf("SC_CLK_TCK")
    own = _stat_fields(pid)
    if own is None:
        return None
    # fields index: 0 state, 1 ppid, …, 11 utime, 12 stime, 13 cutime, 14 cstime
    total = sum(int(own[i]) for i in (11, 12, 13, 14))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            f = _stat_fields(entry.name)
            if f is not None and int(f[1]) == pid:
                total += int(f[11]) + int(f[12])
    return total / tick


def system_busy_s() -> float:
    """CPU seconds all CPUs of the machine spent busy so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle          # user nice system idle iowait irq softirq steal (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime


# --- measures in child processes ----------------------------------------------------------------------------

def ru_maxrss_mb() -> float:
    """getrusage(RUSAGE_SELF).ru_maxrss in MiB (KiB on Linux).

    Caveat: Linux carries ru_maxrss across execve, so in a spawned child it is at least the RSS the parent had
    when it forked the child (e.g. a parent holding 500 MiB makes every child report ≥ 500 MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_hwm_mb() -> float | None:
    """VmHWM of /proc/self/status in MiB: the peak RSS of this process image only (reset by execve)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak RSS of this process in MiB: VmHWM when /proc has it (immune to the parent's size, see
    ru_maxrss_mb), else ru_maxrss."""
    hwm = vm_hwm_mb()
    return hwm if hwm is not None else ru_maxrss_mb()


def _child_main(conn, func, args, kwargs) -> None:
    try:
        result = func(*args, **kwargs)
        if result is None:
            result = {}
        result = dict(result)
        result["peak_rss_mb"] = peak_rss_mb()
        result["ru_maxrss_mb"] = ru_maxrss_mb()
        conn.send(("ok", result))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


class ChildError(RuntimeError):
    pass


def run_in_child(func: Callable[..., dict | None], *args: Any, **kwargs: Any) -> dict:
    """Run `func(*args, **kwargs)` in a fresh spawned interpreter; returns its dict plus `peak_rss_mb` (VmHWM)
    and `ru_maxrss_mb`.

    `func` must be importable (module level) and its arguments picklable. The child is killed if the parent
    leaves early (exception, Ctrl-C, SIGTERM through `exit_on_sigterm`)."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child_end, func, args, kwargs),
                       name=f"bench-{getattr(func, '__name__', 'child')}")
    proc.start()
    child_end.close()
    try:
        while not parent_end.poll(0.5):
            if not proc.is_alive():
                raise ChildError(f"{proc.name} died without a result (exit code {proc.exitcode})")
        status, payload = parent_end.recv()
        proc.join()
    finally:
        parent_end.close()
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if status != "ok":
        raise ChildError(f"{proc.name} failed: {payload}")
    return payload


def run_measured(func: Callable[..., dict | None], *args: Any,
                 server_cpu: Callable[[], float | None] | None = None) -> dict:
    """`run_in_child`, plus what the parent can see around it:

    - `server_cpu_s`: CPU our own PostgreSQL used meanwhile (when `server_cpu` is given and knows);
    - `others_cpus`: how many CPUs, on average over the child's life, *other* processes of the machine kept busy
      (machine busy time − this process and its children − our server): competition that inflates wall times;
    - `load_1m`: the 1-min load average before the start."""
    load = os.getloadavg()[0]
    s0 = server_cpu() if server_cpu else None
    own0, busy0, t0 = _own_children_cpu_s(), system_busy_s(), time.perf_counter()
    r = run_in_child(func, *args)
    wall = time.perf_counter() - t0
    own, busy = _own_children_cpu_s() - own0, system_busy_s() - busy0
    s1 = server_cpu() if server_cpu else None
    r["server_cpu_s"] = (s1 - s0) if s0 is not None and s1 is not None else None
    others = busy - own - (r["server_cpu_s"] or 0.0)
    r["others_cpus"] = max(0.0, others / wall) if r["server_cpu_s"] is not None or server_cpu is None else None
    r["load_1m"] = load
    return r


# --- output -------------------------------------------------------------------------------------------------

def print_table(title: str, rows: list[tuple[str, str] | None]) -> None:
    """A two-column table on stdout; None draws a separator."""
    width = max((len(r[0]) for r in rows if r), default=0)
    print(title)
    print("-" * max(len(title), width + 20))
    for r in rows:
        if r is None:
            print()
        else:
            print(f"  {r[0]:<{width}}  {r[1]}")
    print(flush=True)


def emit_json(figures: dict) -> None:
    """The last line of stdout: every figure as one JSON object."""
    sys.stdout.flush()
    print(json.dumps(figures, ensure_ascii=False, separators=(", ", ": ")), flush=True)


def env_for_children(**values: str) -> None:
    """Set environment variables before spawning children (spawned interpreters inherit os.environ)."""
    os.environ.update(values)


# --- the shape every benchmark script shares ------------------------------------------------------------------

def parse_args(description: str, argv=None, *, min_visits: int = 1):
    """`--visits N` (default 1,000,000), `--db URL`, `--keep`: the options of every benchmark."""
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--visits", type=int, default=1_000_000, help="visits in the generated file (default 1,000,000)")
    p.add_argument("--db", help="postgresql:// URL of a server to use instead of starting one; a database "
                                "rpu_bench_<random> is created there and dropped at the end")
    p.add_argument("--keep", action="store_true", help="keep the benchmark database (and, without --db, the "
                                                       "stopped cluster and the temp files)")
    args = p.parse_args(argv)
    if args.visits < min_visits:
        p.error(f"--visits must be at least {min_visits}")
    return args


def run_benchmark(run: Callable, args, *, title: str, prefix: str) -> int:
    """Run `run(args, tmp) -> (rows, figures)` in a temp dir removed afterwards (unless --keep), then print the
    table and, last, the JSON line — after the cleanup, so nothing follows the figures."""
    exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        rows, figures = run(args, tmp)
    except KeyboardInterrupt:
        note("interrupted: cleaning up")
        return 130
    finally:
        if args.keep:
            note(f"kept the temp files in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(title, rows)
    emit_json(figures)
    return 0


def busy_warning(rows: list, measures: list[dict], tolerance: float) -> None:
    """Append a warning row when other processes kept the CPUs busy during a measure."""
    busy = max((r.get("others_cpus") or 0.0) for r in measures)
    if busy > tolerance:
        rows.append(("warning", f"other processes kept up to {busy:.2f} of the {os.cpu_count()} CPUs busy during a "
                                "measure: wall times (and the ratio) may be inflated; rerun on a quiet machine"))
