"""Quality gate benchmark: the gate's time on a batch of N visits next to the ingest time of the same batch.

    python bench/quality.py [--visits N (default 1_000_000)] [--db URL] [--keep]

One synthetic RPU file of N visits (`rpu.synth.big_file`, 3rd establishment of the demo region; generation time
reported apart, part of no other figure) on a freshly migrated database, then in the same run, each measure in its
own spawned child process (`bench/_common.run_measured`):

(a) `ingest_s` — `rpu.intake.ingest_path(region, url, path, sender=finess, quality_gate=False)`: archive copy,
    XSD and FEDORU checks, COPY, cancel-and-replace, commit, receipt — the load of the batch without its gate.
(b) `quality_s` — in a fresh interpreter, as the `ingest` task of the intake DAG runs it after the load:
    `import great_expectations` (`gx_import_s`, Great Expectations is imported inside the task) then
    `rpu.quality.gate.run_gate(conn, region, url, file_id)` on the batch (a) loaded (`gate_s`): the rpu_visit suite
    through GX's SQL engine on the view of the batch, the rpu_batch suite on its day counts, the results
    stored. quality_s = gx_import_s + gate_s.

    ratio = quality_s / ingest_s      target ≤ 0.25

Also reported: the gate's outcome (status of each suite, expectations evaluated), `visit_suite_s` and
`batch_suite_s` (the suites' own durations as stored in quality_run), and CPU seconds of each measure (client,
its children — the loader parses big files in a forked child — and, without --db, our PostgreSQL server):
`cpu_ratio` = the same ratio in CPU seconds, steadier than wall times on a busy machine.

Without --db, a PostgreSQL of our own is started as the tests do (PostgresServer in a temp dir, fast=True). With
--db URL, a database `rpu_bench_<random>` is created on that URL's server and dropped at the end unless --keep.
Everything started is stopped and every temp dir removed on every exit path.

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object with every figure.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bench_database,
    busy_warning,
    env_for_children,
    note,
    parse_args,
    run_benchmark,
    run_measured,
)

RATIO_TARGET = 0.25
OTHERS_TOLERANCE = 0.25   # CPUs kept busy by other processes during a measure before the table warns


# --- the measures (module level: they run in spawned children) ----------------------------------------------

def _cpu_with_children() -> float:
    """CPU seconds of this process and of its reaped children (the loader parses big files in a forked child)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_ingest(region, db_url: str, path: Path, sender: str) -> dict:
    import rpu.checks  # noqa: F401 - a worker has the package loaded already: module imports are not load time
    import rpu.xsd  # noqa: F401
    from rpu.intake import ingest_path

    t0, c0 = time.perf_counter(), _cpu_with_children()
    r = ingest_path(region, db_url, path, sender=sender, quality_gate=False)
    return {"ingest_s": time.perf_counter() - t0, "cpu_s": _cpu_with_children() - c0, "status": r["status"],
            "file_id": r["file_id"], "visits_loaded": r["visits_loaded"]}


def measure_gate(region, db_url: str, file_id: int) -> dict:
    from rpu import store
    from rpu import expectations
    from rpu.quality import gate, gx

    t0, c0 = time.perf_counter(), _cpu_with_children()
    gx.gx_module()   # what the task pays for `import great_expectations`
    t1 = time.perf_counter()
    with store.connection(db_url) as conn:
        q = gate.run_gate(conn, region, db_url, file_id)
        runs = {s: (d, n) for s, d, n in conn.execute(
            "SELECT r.suite, r.duration_s, count(x.expectation) FROM quality_run r "
            "LEFT JOIN quality_result x ON x.run_id = r.id WHERE r.file_id = %s GROUP BY r.id", (file_id,))}
    t2 = time.perf_counter()
    return {"gx_import_s": t1 - t0, "gate_s": t2 - t1, "quality_s": t2 - t0, "cpu_s": _cpu_with_children() - c0,
            "status": q["status"], "suites": {s["suite"]: s["status"] for s in q["suites"]}, "error": q["error"],
            "visit_suite_s": runs[expectations.VISIT_SUITE][0], "batch_suite_s": runs[expectations.BATCH_SUITE][0],
            "expectations": sum(n for _, n in runs.values())}


# --- the run ------------------------------------------------------------------------------------------------

def _cpu(r: dict) -> str:
    server = f" + server {r['server_cpu_s']:6.2f} s" if r.get("server_cpu_s") is not None else ""
    others = f"   others {r['others_cpus']:.2f} CPU" if r.get("others_cpus") is not None else ""
    return f"cpu: client {r['cpu_s']:6.2f} s{server}{others}"


def run(args, tmp: Path) -> tuple[list, dict]:
    env_for_children(RPU_DATA_DIR=str(tmp / "data"))   # archive copies land in the temp dir
    from rpu import synth
    from rpu.config import get_region

    region = get_region("demo")
    finess = region.establishments[2].finess
    n = args.visits
    note(f"generating {n:,} visits for {finess} …")
    path = tmp / synth.big_file_name(finess, n)
    t0 = time.perf_counter()
    synth.big_file(path, finess, n)
    gen_s = time.perf_counter() - t0
    size = path.stat().st_size
    note(f"  {path.name}: {size / 2**20:.1f} MiB in {gen_s:.1f} s")
    limit_note = None
    if size > region.intake.max_file_bytes:
        limit_note = (f"file of {size / 2**20:.0f} MiB > region max_file_mb {region.intake.max_file_bytes / 2**20:.0f}: "
                      "limit raised for this run")
        region = region.adjusted(intake={"max_file_bytes": size})

    with bench_database(args.db, keep=args.keep) as db:
        version = db.server_version()
        note("(a) ingest without the gate …")
        a = run_measured(measure_ingest, region, db.url, path, finess, server_cpu=db.server_cpu_s)
        note(f"    ingest_s = {a['ingest_s']:.2f} ({a['status']}, {a['visits_loaded']:,} loaded)")
        if a["status"] != "accepted":
            raise SystemExit(f"the generated file was not accepted: {a}")
        db.checkpoint()
        note("(b) quality gate (import of Great Expectations + rpu.quality.gate.run_gate) …")
        b = run_measured(measure_gate, region, db.url, a["file_id"], server_cpu=db.server_cpu_s)
        note(f"    quality_s = {b['quality_s']:.2f} ({b['status']})")
        where = db.where

    ingest_s, quality_s = a["ingest_s"], b["quality_s"]
    ratio = quality_s / ingest_s
    ok = b["status"] in ("passed", "failed") and b["error"] is None
    figures = {
        "visits": n,
        "ingest_s": round(ingest_s, 3),
        "quality_s": round(quality_s, 3),
        "ratio": round(ratio, 3),
        "ratio_ok": ratio <= RATIO_TARGET,
        "gx_import_s": round(b["gx_import_s"], 3),
        "gate_s": round(b["gate_s"], 3),
        "visit_suite_s": b["visit_suite_s"],
        "batch_suite_s": b["batch_suite_s"],
        "expectations": b["expectations"],
        "gate_status": b["status"],
        "gate_ok": ok,
        "engine": "sql (rpu_visit, on the view of the batch) + pandas (rpu_batch, day counts)",
        "cpu_ingest_s": round(a["cpu_s"] + (a.get("server_cpu_s") or 0.0), 3) if a.get("server_cpu_s") is not None
        else None,
        "cpu_quality_s": round(b["cpu_s"] + (b.get("server_cpu_s") or 0.0), 3) if b.get("server_cpu_s") is not None
        else None,
        "cpu_ratio": round((b["cpu_s"] + b["server_cpu_s"]) / (a["cpu_s"] + a["server_cpu_s"]), 3)
        if a.get("server_cpu_s") is not None and b.get("server_cpu_s") is not None else None,
        "others_cpus": [None if r["others_cpus"] is None else round(r["others_cpus"], 2) for r in (a, b)],
        "file_mb": round(size / 2**20, 1),
        "gen_s": round(gen_s, 2),
    }
    yes = {True: "yes", False: "NO"}
    rows = [
        ("visits (N)", f"{n:,}"),
        ("file", f"{size / 2**20:,.1f} MiB"),
        ("generation (not counted)", f"{gen_s:.2f} s"),
        ("PostgreSQL", f"{version} — {where}"),
        ("machine", f"{os.cpu_count()} CPUs"),
        None,
        ("(a) ingest, no gate", f"{ingest_s:8.2f} s {n / ingest_s:>10,.0f} visits/s   {_cpu(a)}"),
        ("(b) quality gate", f"{quality_s:8.2f} s {n / quality_s:>10,.0f} visits/s   {_cpu(b)}"),
        ("    import of GX", f"{b['gx_import_s']:8.2f} s"),
        ("    run_gate", f"{b['gate_s']:8.2f} s  (rpu_visit {b['visit_suite_s']:.2f} s, rpu_batch "
                         f"{b['batch_suite_s']:.2f} s, {b['expectations']} expectations)"),
        ("    outcome", f"{b['status']}: " + ", ".join(f"{s} {st}" for s, st in b["suites"].items())
         + (f" — {b['error']}" if b["error"] else "")),
        None,
        ("ratio (b)/(a)", f"{ratio:.3f}   target ≤ {RATIO_TARGET}: {yes[ratio <= RATIO_TARGET]}"),
        ("  same ratio in CPU seconds", f"{figures['cpu_ratio']:.3f}" if figures["cpu_ratio"] is not None
         else "n/a (server CPU unknown with --db)"),
    ]
    busy_warning(rows, (a, b), OTHERS_TOLERANCE)
    if limit_note:
        rows.append(("note", limit_note))
    return rows, figures


def main(argv=None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv, min_visits=1)
    return run_benchmark(run, args, title=f"RPU quality gate benchmark — {args.visits:,} visits", prefix="rpu-bench-quality-")


if __name__ == "__main__":
    sys.exit(main())
