"""Ingest benchmark: how far the full intake path is from its floor (parse alone + COPY alone).

    python bench/ingest.py [--visits N (default 1_000_000)] [--db URL] [--keep]

One synthetic RPU file of N visits (`rpu.synth.big_file`) is written for the 3rd establishment of the demo
region (generation time `gen_s` is reported apart and is part of no other figure). Then, in the same run and on
the same file, each measure in its own spawned child process (`bench/_common.run_in_child`):

(a) `parse_s` — lxml parsing alone: `RpuReader(path, with_schema=False).visits()` consumed without doing
    anything with the visits (streaming parse + item extraction: the floor of any Python reader).
(b) `copy_s` — COPY alone: beforehand (untimed) the checks run over the file once and every accepted row is
    rendered with `store.render_visit` (a rejected visit, if any, with `store.render_rejected`, as the loader
    does) into a temp file, which the child reads into memory before the clock starts. Timed: open a
    transaction, `store.create_stage(conn)`, COPY the pre-rendered bytes into the stage in 1 MiB chunks
    (`store.copy_stage`), commit. Nothing else: no INSERT into `visit` — (b) is the pure COPY cost.
(c) `full_s` — the full parse+validate+load path: `rpu.intake.ingest_path(region, url, path, sender=finess)`
    on a freshly migrated, empty database (so the replacement really inserts N visits), end to end: sha256,
    archive copy (under RPU_DATA_DIR, a temp dir), XSD validation, checks, COPY into the stage, replacement
    into `visit`, commit and receipt.

(d) `bare_parse_s` — bare lxml `iterparse` of the same file, one dict per visit (no XSD, no checks): the floor of
    any Python reader of it.
(e) `gate_s` — the quality gate of the batch (c) left pending (`rpu.quality.gate.gate_pending`, Great
    Expectations' import included), timed apart: no other figure includes it.

    ratio        = full_s / (parse_s + copy_s)      target ≤ 1.5
    ratio_to_parse = full_s / bare_parse_s          target ≤ 1.5
    visits_per_s = N / full_s
    peak_rss_mb  = peak RSS (MiB) of the child running (c), read in the child at its end; (c) is run again on
                   a file of N/4 visits (its own generated file, database emptied first) → peak_rss_mb_quarter.
                   target: memory independent of N, i.e. within 20 % of each other.
                   The figure is /proc's VmHWM; getrusage's ru_maxrss is printed too (ru_maxrss_mb*), but on
                   Linux it survives execve, so in a spawned child it is never below the parent's RSS at spawn
                   time (the parent has generated the files and holds psycopg) — it is not the child's own peak.
    file_mb      = size of the N-visit file in MiB.

Without --db, a PostgreSQL of our own is started as the tests do (PostgresServer in a temp dir, fast=True:
fsync and synchronous_commit off). With --db URL, a database `rpu_bench_<random>` is created on that URL's
server (the URL's own database is only used to create/drop it) and dropped at the end unless --keep.
Everything started is stopped and every temp dir removed on every exit path (--keep leaves the database, or
without --db the stopped cluster and the temp files, for inspection).

The region's `max_file_mb` (512 by default) would reject a file above it with FILE_TOO_LARGE before any visit
is read; when the generated file is larger, the limit is raised for this run (and the table says so) so that
(b) and (c) measure a real load.

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object with every figure.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bench_database,
    busy_warning,
    env_for_children,
    note,
    parse_args,
    run_benchmark,
    run_in_child,
    run_measured,
)

COPY_CHUNK = 1 << 20
RATIO_TARGET = 1.5
RSS_TOLERANCE = 0.20
OTHERS_TOLERANCE = 0.25   # CPUs kept busy by other processes during a measure before the table warns


# --- the measures (module level: they run in spawned children) ----------------------------------------------

def measure_parse(path: Path) -> dict:
    import rpu.xsd  # noqa: F401 - imported lazily by visits(); module imports are not parse time
    from rpu.parse import RpuReader

    reader = RpuReader(path, with_schema=False)
    t0, c0 = time.perf_counter(), time.process_time()
    deque(reader.visits(), maxlen=0)
    parse_s, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"parse_s": parse_s, "cpu_s": cpu, "visits_read": reader.visits_read}


def measure_bare(path: Path) -> dict:
    """(d) bare lxml `iterparse` + one dict per visit (no XSD, no checks): what any Python reader pays at least."""
    from lxml import etree

    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for _, el in etree.iterparse(str(path), events=("end",), tag="PATIENT"):
        {c.tag: (c.text or "").strip() for c in el}
        n += 1
        el.clear()
        while el.getprevious() is not None:
            del el.getparent()[0]
    return {"bare_parse_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "visits_read": n}


def measure_gate(region, db_url: str) -> dict:
    """(e) the quality gate of the batch (c) left pending, apart: GX's import included (a process of its own)."""
    from rpu import store
    from rpu.quality import gate

    t0, c0 = time.perf_counter(), time.process_time()
    with store.connection(db_url) as conn:
        judged = gate.gate_pending(conn, region, db_url)
    return {"gate_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "judged": [j["status"] for j in judged]}


class _FileSink:
    """rpu.checks.VisitSink writing the rows exactly as CopySink renders them, into a file."""

    def __init__(self, fh):
        from rpu import store

        self.fh = fh
        self.render_visit = store.render_visit
        self.render_rejected = store.render_rejected
        self.buf: list[str] = []
        self.size = 0
        self.accepted = 0
        self.rejected_n = 0

    def _add(self, line: str) -> None:
        self.buf.append(line)
        self.size += len(line)
        if self.size >= COPY_CHUNK:
            self.flush()

    def visit(self, row) -> None:
        self.accepted += 1
        self._add(self.render_visit(row))

    def rejected(self, raw, problem) -> None:
        self.rejected_n += 1
        self._add(self.render_rejected(raw, problem))

    def flush(self) -> None:
        if self.buf:
            self.fh.write("".join(self.buf).encode("utf-8"))
            self.buf.clear()
            self.size = 0


def prerender(region, path: Path, sender: str, out: Path) -> dict:
    """Untimed preparation of (b): checks over the file, rows rendered to COPY text in `out`."""
    from rpu.checks import check_file

    t0 = time.perf_counter()
    with open(out, "wb") as fh:
        sink = _FileSink(fh)
        report = check_file(path, region, sender, sink)
        sink.flush()
    if not report.accepted:
        raise RuntimeError(f"the generated file is rejected: {[p.as_dict() for p in report.errors[:3]]}")
    return {"render_s": time.perf_counter() - t0, "accepted": sink.accepted, "rejected": sink.rejected_n,
            "copy_bytes": out.stat().st_size}


def measure_copy(db_url: str, rendered: Path) -> dict:
    from rpu import store

    data = rendered.read_bytes()
    view = memoryview(data)
    with store.connect(db_url) as conn:
        conn.execute("SELECT 1").fetchone()   # connection fully established before the clock starts
        conn.commit()
        t0, c0 = time.perf_counter(), time.process_time()
        with conn.transaction():
            store.create_stage(conn)
            with store.copy_stage(conn) as copy:
                for i in range(0, len(view), COPY_CHUNK):
                    copy.write(view[i:i + COPY_CHUNK])
            rows = copy.cursor.rowcount
        copy_s, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"copy_s": copy_s, "cpu_s": cpu, "rows_copied": rows}


def measure_full(region, db_url: str, path: Path, sender: str) -> dict:
    import rpu.checks  # noqa: F401 - imported lazily by load_file(); a worker has them loaded already
    import rpu.xsd  # noqa: F401
    from rpu.intake import ingest_path

    t0, c0 = time.perf_counter(), time.process_time()
    receipt = ingest_path(region, db_url, path, sender=sender, quality_gate=False)   # the gate: bench/quality.py
    full_s, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"full_s": full_s, "cpu_s": cpu, "status": receipt["status"], "visits_loaded": receipt["visits_loaded"],
            "visits_rejected": receipt["visits_rejected"],
            "errors": [f"{e['rule']}: {e['message']}" for e in receipt["errors"][:3]]}


# --- the run ------------------------------------------------------------------------------------------------

def measured(db, func, *args) -> dict:
    return run_measured(func, *args, server_cpu=db.server_cpu_s)


def _cpu(r: dict) -> str:
    server = f" + server {r['server_cpu_s']:6.2f} s" if r.get("server_cpu_s") is not None else ""
    others = f"   others {r['others_cpus']:.2f} CPU" if r.get("others_cpus") is not None else ""
    return f"cpu: client {r['cpu_s']:6.2f} s{server}{others}"


def _cpu_total(r: dict) -> float:
    return r["cpu_s"] + (r.get("server_cpu_s") or 0.0)


def generate(tmp: Path, finess: str, n: int, sub: str) -> tuple[Path, float]:
    from rpu import synth

    path = tmp / sub / synth.big_file_name(finess, n)
    t0 = time.perf_counter()
    synth.big_file(path, finess, n)
    return path, time.perf_counter() - t0


def run(args, tmp: Path) -> tuple[list, dict]:
    env_for_children(RPU_DATA_DIR=str(tmp / "data"))   # archive copies of (c) land in the temp dir
    from rpu.config import get_region

    region = get_region("demo")
    est = region.establishments[2]
    finess = est.finess
    n, nq = args.visits, max(1, args.visits // 4)

    note(f"generating {n:,} visits for {finess} ({est.name}) …")
    path, gen_s = generate(tmp, finess, n, "full")
    size = path.stat().st_size
    note(f"  {path.name}: {size / 2**20:.1f} MiB in {gen_s:.1f} s")
    note(f"generating {nq:,} visits (N/4) …")
    qpath, gen_q_s = generate(tmp, finess, nq, "quarter")

    limit_note = None
    if size > region.intake.max_file_bytes:
        limit_note = (f"file of {size / 2**20:.0f} MiB > region max_file_mb {region.intake.max_file_bytes / 2**20:.0f}: "
                      "limit raised for this run")
        note(limit_note)
        region = region.adjusted(intake={"max_file_bytes": size})

    with bench_database(args.db, keep=args.keep) as db:
        version = db.server_version()
        note("(a) parse alone …")
        a = measured(db, measure_parse, path)
        note(f"    parse_s = {a['parse_s']:.2f}")

        note("(b) pre-rendering the COPY text (untimed) …")
        rendered = tmp / "stage.copy"
        pre = run_in_child(prerender, region, path, finess, rendered)
        db.checkpoint()
        note("(b) COPY alone …")
        b = measured(db, measure_copy, db.url, rendered)
        rendered.unlink()
        note(f"    copy_s = {b['copy_s']:.2f}")

        db.reset()
        note("(c) full ingest_path …")
        c = measured(db, measure_full, region, db.url, path, finess)
        note(f"    full_s = {c['full_s']:.2f} ({c['status']}, {c['visits_loaded']:,} loaded)")

        note("(e) quality gate of that batch, apart …")
        e = measured(db, measure_gate, region, db.url)
        note(f"    gate_s = {e['gate_s']:.2f} ({e['judged']})")

        note("(d) bare lxml iterparse + dict per visit …")
        d = measured(db, measure_bare, path)
        note(f"    bare_parse_s = {d['bare_parse_s']:.2f}")

        db.reset()
        note("(c) full ingest_path on N/4 …")
        cq = measured(db, measure_full, region, db.url, qpath, finess)
        note(f"    full_s = {cq['full_s']:.2f} ({cq['status']}, {cq['visits_loaded']:,} loaded)")
        where = db.where
        own_server = db.own_server

    parse_s, copy_s, full_s = a["parse_s"], b["copy_s"], c["full_s"]
    ratio = full_s / (parse_s + copy_s)
    bare_s = d["bare_parse_s"]
    ratio_to_parse = full_s / bare_s
    cpu_ratio = _cpu_total(c) / (_cpu_total(a) + _cpu_total(b))
    rss, rss_q = c["peak_rss_mb"], cq["peak_rss_mb"]
    rss_diff = abs(rss - rss_q) / rss_q
    rss_ok = rss_diff <= RSS_TOLERANCE
    full_ok = c["status"] == "accepted" and c["visits_loaded"] == pre["accepted"] == n
    figures = {
        "visits": n,
        "parse_s": round(parse_s, 3),
        "copy_s": round(copy_s, 3),
        "full_s": round(full_s, 3),
        "ratio": round(ratio, 3),
        "bare_parse_s": round(bare_s, 3),
        "ratio_to_parse": round(ratio_to_parse, 3),
        "gate_s": round(e["gate_s"], 3),
        "visits_per_s": round(n / full_s),
        "peak_rss_mb": round(rss, 1),
        "peak_rss_mb_quarter": round(rss_q, 1),
        "file_mb": round(size / 2**20, 1),
        "gen_s": round(gen_s, 2),
        "ru_maxrss_mb": round(c["ru_maxrss_mb"], 1),
        "ru_maxrss_mb_quarter": round(cq["ru_maxrss_mb"], 1),
        # client + server CPU seconds (own server only: a --db server's CPU is not visible)
        "cpu_parse_s": round(_cpu_total(a), 3) if own_server else None,
        "cpu_copy_s": round(_cpu_total(b), 3) if own_server else None,
        "cpu_full_s": round(_cpu_total(c), 3) if own_server else None,
        "cpu_ratio": round(cpu_ratio, 3) if own_server else None,
        "others_cpus": [None if r["others_cpus"] is None else round(r["others_cpus"], 2) for r in (a, b, c, cq)],
        "ratio_ok": ratio <= RATIO_TARGET,
        "ratio_to_parse_ok": ratio_to_parse <= RATIO_TARGET,
        "rss_independent_of_n": rss_ok,
        "full_accepted": full_ok,
    }
    yes = {True: "yes", False: "NO"}
    rows = [
        ("visits (N)", f"{n:,}"),
        ("file", f"{size / 2**20:,.1f} MiB  ({size / n:.0f} bytes/visit)"),
        ("generation (not counted)", f"{gen_s:.2f} s  (N/4 file: {gen_q_s:.2f} s)"),
        ("PostgreSQL", f"{version} — {where}"),
        ("machine", f"{os.cpu_count()} CPUs"),
        None,
        ("(a) parse alone", f"{parse_s:8.2f} s {n / parse_s:>10,.0f} visits/s   {_cpu(a)}"),
        ("(b) COPY alone", f"{copy_s:8.2f} s {n / copy_s:>10,.0f} visits/s   {_cpu(b)}"),
        ("    (a)+(b)", f"{parse_s + copy_s:8.2f} s"),
        ("(c) full ingest_path", f"{full_s:8.2f} s {n / full_s:>10,.0f} visits/s   {_cpu(c)}"),
        ("(d) bare lxml iterparse", f"{bare_s:8.2f} s {n / bare_s:>10,.0f} visits/s   {_cpu(d)}"),
        ("(e) gate of (c), apart", f"{e['gate_s']:8.2f} s  (Great Expectations' import included)   {_cpu(e)}"),
        ("(c) on N/4", f"{cq['full_s']:8.2f} s {nq / cq['full_s']:>10,.0f} visits/s   {_cpu(cq)}"),
        ("    (b) input", f"{pre['copy_bytes'] / 2**20:.0f} MiB of COPY text, {b['rows_copied']:,} rows "
                          f"(checks+render beforehand, untimed: {pre['render_s']:.2f} s)"),
        None,
        ("peak RSS (VmHWM)", f"(a) {a['peak_rss_mb']:.0f} MiB   (b) {b['peak_rss_mb']:.0f} MiB   "
                             f"(c) {rss:.0f} MiB   (c) N/4 {rss_q:.0f} MiB"),
        ("ru_maxrss of (c), (c) N/4", f"{c['ru_maxrss_mb']:.0f}, {cq['ru_maxrss_mb']:.0f} MiB "
                                     "(≥ the parent's RSS at spawn on Linux: not used)"),
        None,
        ("ratio (c)/((a)+(b))", f"{ratio:.2f}   target ≤ {RATIO_TARGET}: {yes[ratio <= RATIO_TARGET]}"),
        ("ratio_to_parse (c)/(d)", f"{ratio_to_parse:.2f}   target ≤ {RATIO_TARGET}: "
                                   f"{yes[ratio_to_parse <= RATIO_TARGET]}"),
        ("  same ratio in CPU seconds", f"{cpu_ratio:.2f}" if own_server else "n/a (server CPU unknown with --db)"),
        ("peak RSS N vs N/4", f"{rss:.0f} vs {rss_q:.0f} MiB ({(rss - rss_q) / rss_q:+.0%})   "
                              f"target within {RSS_TOLERANCE:.0%}: {yes[rss_ok]}"),
        ("(c) outcome", f"{c['status']}, {c['visits_loaded']:,} visits loaded, {c['visits_rejected']} rejected"
                        + ("" if full_ok else f"  — NOT A VALID LOAD: {c['errors']}")),
    ]
    busy_warning(rows, (a, b, c, d, e, cq), OTHERS_TOLERANCE)
    if limit_note:
        rows.append(("note", limit_note))
    return rows, figures


def main(argv=None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv, min_visits=4)
    return run_benchmark(run, args, title=f"RPU ingest benchmark — {args.visits:,} visits", prefix="rpu-bench-ingest-")


if __name__ == "__main__":
    sys.exit(main())
