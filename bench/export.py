"""Benchmark of the ATIH export (the largest send: a region's whole year in December).

    python bench/export.py [--visits N] [--db URL] [--keep]

Loads N visits for one establishment and 3N for another (a synthetic file of SEED visits ingested through the
real intake, then copied server-side with shifted entry dates over the year 2025, day after day as nightly
loads write them), then measures, in the same run, each in its own child process:

  copy_s       a bare `COPY (SELECT <every column> FROM visit WHERE etab = … AND entry_date in 2025) TO STDOUT`
               of the N visits, read and thrown away: the floor of any export;
  export_s     the ATIH export of the same N visits, as the send DAG builds it (rpu.exports.build: selection
               and anonymisation in PostgreSQL, streamed by COPY, each row written as an XML line into a file,
               the manifest's counts taken from the rows written);
  plan_s       the run's planning before any file is built (rpu.exports.atih_specs: the FINESS_ordre with
               data and their declared days, the postal code table loaded if its file changed, its coverage
               of the visits' postal codes checked), once per run, not per file;
               both are timed 3 times, alternately, and their medians kept (every time is in the JSON);
  ratio        export_s / copy_s (target ≤ 2);
  peak_rss_mb_n, peak_rss_mb_3n
               peak RSS (VmHWM) of the export child for N (the highest of the 3) and for 3N visits (target:
               within 20 %).

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (bench_database, busy_warning, env_for_children, note, parse_args,  # noqa: E402
                     run_benchmark, run_measured)

RATIO_TARGET = 2.0
RSS_TOLERANCE = 0.20
OTHERS_TOLERANCE = 0.25   # CPUs kept busy by other processes during a measure before the table warns
SEED_VISITS = 50_000
REPEATS = 3                           # the bare COPY and the export of N are each timed 3 times: medians
RUN_DAY = date(2026, 1, 2)            # a monthly ATIH run on 2 January: the whole year 2025
BENCH_SQL = Path(__file__).resolve().parent / "sql"   # the benchmark's own queries (not shipped)


def bench_query(name: str) -> str:
    """The text of bench/sql/<name>.sql."""
    return (BENCH_SQL / f"{name}.sql").read_text(encoding="utf-8")


def seed(region, db_url: str, tmp: Path, targets: dict[str, int]) -> dict:
    """Ingest a synthetic file once, then copy its visits server-side up to `targets[etab]` visits each."""
    from rpu import intake, store, synth

    src = region.establishments[2].finess
    path = synth.big_file(tmp / "seed.xml", src, SEED_VISITS, start=date(2025, 1, 1))
    t0 = time.perf_counter()
    r = intake.ingest_path(region, db_url, path, sender=src)
    assert r["status"] == "accepted", r["errors"][:3]
    with store.connection(db_url) as conn, conn.transaction():
        for etab, n in targets.items():
            conn.execute(bench_query("export_fill"), {"src": src, "etab": etab, "n": n})
            conn.execute(bench_query("export_days"), {"etab": etab})
        conn.execute("ANALYZE visit")
    return {"seed_s": time.perf_counter() - t0}


def measure_copy(db_url: str, etab: str, start: date, end: date) -> dict:
    from rpu import store

    with store.connection(db_url) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        size = 0
        lines = 0
        with conn.cursor().copy(f"COPY ({bench_query('export_bare').rstrip().rstrip(';')}) TO STDOUT",
                                {"etab": etab, "start": start, "end": end}) as copy:
            for data in copy:
                size += len(data)
                lines += bytes(data).count(b"\n")
        return {"copy_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "rows": lines,
                "bytes": size}


def measure_export(region, db_url: str, etab: str, out: Path) -> dict:
    from rpu import exports, store

    with store.connection(db_url) as conn:
        t0 = time.perf_counter()
        [spec] = exports.atih_specs(conn, region, RUN_DAY, [etab])
        plan_s = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        written = exports.build(conn, region, spec, out)
        assert sum(written.per_day.values()) == written.visits
        return {"export_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "visits": written.visits,
                "bytes": out.stat().st_size, "period": f"{spec.start} → {spec.end}", "plan_s": plan_s}


def _median(runs: list[dict], key: str) -> dict:
    """The run whose `key` is the median."""
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def run(args, tmp: Path) -> tuple[list, dict]:
    os.chmod(tmp, 0o755)
    env_for_children(RPU_DATA_DIR=str(tmp / "data"))
    from rpu.config import get_region

    region = get_region("demo")
    e_n, e_3n = region.establishments[3].finess, region.establishments[4].finess
    n = args.visits
    with bench_database(args.db, keep=args.keep) as db:
        note(f"loading {n:,} + {3 * n:,} visits …")
        s = seed(region, db.url, tmp, {e_n: n, e_3n: 3 * n})
        start, end = date(2025, 1, 1), date(2025, 12, 31)
        db.checkpoint()
        copies, exported = [], []
        for i in range(REPEATS):   # alternated, so that a passing disturbance touches both
            note(f"bare COPY of the N visits ({i + 1}/{REPEATS}) …")
            copies.append(run_measured(measure_copy, db.url, e_n, start, end, server_cpu=db.server_cpu_s))
            note(f"ATIH export of the N visits ({i + 1}/{REPEATS}) …")
            exported.append(run_measured(measure_export, region, db.url, e_n, tmp / "atih_n.xml",
                                         server_cpu=db.server_cpu_s))
            (tmp / "atih_n.xml").unlink()
        c, x = _median(copies, "copy_s"), _median(exported, "export_s")
        x["peak_rss_mb"] = max(r["peak_rss_mb"] for r in exported)
        note("ATIH export of the 3N visits …")
        x3 = run_measured(measure_export, region, db.url, e_3n, tmp / "atih_3n.xml", server_cpu=db.server_cpu_s)
        where = db.where
    ratio = x["export_s"] / c["copy_s"]
    rss_diff = abs(x3["peak_rss_mb"] - x["peak_rss_mb"]) / x["peak_rss_mb"]
    figures = {
        "visits": n, "copy_s": round(c["copy_s"], 3), "export_s": round(x["export_s"], 3),
        "copy_s_runs": [round(r["copy_s"], 3) for r in copies],
        "export_s_runs": [round(r["export_s"], 3) for r in exported],
        "ratio": round(ratio, 3), "export_3n_s": round(x3["export_s"], 3), "plan_s": round(x["plan_s"], 3),
        "peak_rss_mb_n": round(x["peak_rss_mb"], 1), "peak_rss_mb_3n": round(x3["peak_rss_mb"], 1),
        "rows_copied": c["rows"], "visits_exported": x["visits"], "visits_exported_3n": x3["visits"],
        "file_mb_n": round(x["bytes"] / 2**20, 1), "seed_s": round(s["seed_s"], 1),
        "others_cpus": [None if r["others_cpus"] is None else round(r["others_cpus"], 2)
                        for r in (*copies, *exported, x3)],
        "ratio_ok": ratio <= RATIO_TARGET, "rss_flat": rss_diff <= RSS_TOLERANCE,
    }
    yes = {True: "yes", False: "NO"}
    rows = [
        ("PostgreSQL", where), ("machine", f"{os.cpu_count()} CPUs"), ("period", x["period"]), None,
        ("bare COPY (N)", f"{c['copy_s']:8.2f} s  {c['rows']:,} rows, {c['bytes'] / 2**20:,.0f} MiB"),
        ("ATIH export (N)", f"{x['export_s']:8.2f} s  {x['visits']:,} visits, {x['bytes'] / 2**20:,.0f} MiB"),
        ("ATIH export (3N)", f"{x3['export_s']:8.2f} s  {x3['visits']:,} visits"),
        ("ATIH plan (N)", f"{x['plan_s']:8.2f} s  once per run: declared days, postal code table check"), None,
        ("ratio export/COPY", f"{ratio:.2f}   target ≤ {RATIO_TARGET}: {yes[ratio <= RATIO_TARGET]}"),
        ("peak RSS N vs 3N", f"{x['peak_rss_mb']:.0f} vs {x3['peak_rss_mb']:.0f} MiB "
                             f"({(x3['peak_rss_mb'] - x['peak_rss_mb']) / x['peak_rss_mb']:+.0%})   "
                             f"target within {RSS_TOLERANCE:.0%}: {yes[rss_diff <= RSS_TOLERANCE]}"),
        ("check", "visit counts " + ("match" if c["rows"] == x["visits"] == n and x3["visits"] == 3 * n
                                     else "DO NOT MATCH")),
    ]
    busy_warning(rows, [*copies, *exported, x3], OTHERS_TOLERANCE)
    return rows, figures


def main(argv=None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    return run_benchmark(run, args, title=f"ATIH export benchmark — {args.visits:,} visits (and {3 * args.visits:,})",
                         prefix="rpu-bench-export-")


if __name__ == "__main__":
    sys.exit(main())
