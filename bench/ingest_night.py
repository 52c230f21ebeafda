"""One night of daily files through `rpu ingest` (one process, gate included), against a naive script.

    python bench/ingest_night.py [--db URL] [--seed S] [--day YYYY-MM-DD]

Each establishment of the demo region sends one realistic daily file
(`rpu.synth.daily`; generation is not timed). Then, in the same run, each measure a process of its own, timed from
its start (interpreter start and imports included), its peak RSS from the kernel (`wait4`):

(a) `rpu_ingest_s` — `rpu ingest --region demo --db URL FILE...` on all the files, as an operator runs it: every
    check, one transaction per file (cancel and replace by day), receipts, then the run's one quality gate.
(b) `naive_s` — the script a regional team would write: ElementTree parse of each whole file, then, in one
    transaction per file, DELETE the file's period for its FINESS and one INSERT per visit through psycopg
    `executemany` (no XSD, no rule, no receipt, no gate; a file it cannot parse is skipped and counted).
(c) `gx_import_s` — `python -c "import great_expectations"` alone: the gate's fixed cost.
(d) `one_file_s` — the load of the night's biggest daily file alone, in a process of its own on a fresh database:
    interpreter start, imports, parse, checks, COPY, replace by day, receipt data (`rpu.intake.ingest_path` with
    the gate left out: `rpu ingest` runs it once after all its files, (a) includes it). Target ≤ 0.5 s, ≤ 120 MB.

    target_s = naive_s + gx_import_s + 1     (issue 13: rpu_ingest_s ≤ target_s)

Each database is fresh (bench/_common.bench_database). Figures: the last line of stdout, JSON.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_database, note, run_benchmark  # noqa: E402

NAIVE = r'''
import sys, xml.etree.ElementTree as ET, psycopg
db, files = sys.argv[1], sys.argv[2:]
skipped = visits = 0
with psycopg.connect(db) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS naive_visit (finess text, entree text, sortie text, cp text, "
                 "naissance text, sexe text, mode_entree text, provenance text, gravite text, dp text, "
                 "mode_sortie text, destination text, orient text)")
    conn.commit()
    for f in files:
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError:
            skipped += 1
            continue
        finess = root.findtext("ENTETE/FINESS")
        start, end = root.findtext("ENTETE/DATE_DEBUT_EXTRACTION"), root.findtext("ENTETE/DATE_FIN_EXTRACTION")
        rows = [(finess, p.findtext("ENTREE"), p.findtext("SORTIE"), p.findtext("CP"), p.findtext("NAISSANCE"),
                 p.findtext("SEXE"), p.findtext("MODE_ENTREE"), p.findtext("PROVENANCE"), p.findtext("GRAVITE"),
                 p.findtext("DP"), p.findtext("MODE_SORTIE"), p.findtext("DESTINATION"), p.findtext("ORIENT"))
                for p in root.iter("PATIENT")]
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM naive_visit WHERE finess = %s AND entree BETWEEN %s AND %s",
                        (finess, start, end))
            cur.executemany("INSERT INTO naive_visit VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            rows)
        visits += len(rows)
print(visits, skipped)
'''


def timed_rss(argv: list[str], env: dict | None = None) -> dict:
    """Like `timed`, with the child's peak RSS (MiB) from os.wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"s": wall, "rc": p.returncode, "peak_rss_mb": usage.ru_maxrss / 1024,
                "out": out.read().decode("utf-8", "replace"), "err": err.read().decode("utf-8", "replace")}


def run(args, tmp: Path):
    from rpu.config import get_region
    from rpu.synth import daily

    region = get_region("demo")
    files, visits = [], 0
    note("generating one night of the demo region …")
    for pf in daily.plan(region, start=date.fromisoformat(args.day), days=1, seed=args.seed):
        path, nv = daily.write_planned(tmp / "night", pf, seed=args.seed)
        files.append(path)
        visits += nv
    note(f"  {len(files)} files, {visits:,} visits")
    env = dict(os.environ, RPU_DATA_DIR=str(tmp / "data"))
    rpu = str(Path(sys.executable).with_name("rpu"))
    with bench_database(args.db) as db:
        note("(a) rpu ingest of the night, one process …")
        a = timed_rss([rpu, "ingest", "--region", "demo", "--db", db.url, *map(str, files)], env)
        if a["rc"] not in (0, 1):
            raise RuntimeError(f"rpu ingest failed ({a['rc']}): {a['err'][-2000:]}")
    with bench_database(args.db, migrate=False) as db:
        note("(b) the naive script …")
        b = timed_rss([sys.executable, "-c", NAIVE, db.url, *map(str, files)], env)
        if b["rc"] != 0:
            raise RuntimeError(f"naive script failed: {b['err'][-2000:]}")
    biggest = max(files, key=lambda p: p.stat().st_size)
    with bench_database(args.db) as db:
        note(f"(d) the load of {biggest.name} alone …")
        load = ("import sys; from pathlib import Path; from rpu import intake; from rpu.config import get_region; "
                "r = intake.ingest_path(get_region('demo'), sys.argv[1], Path(sys.argv[2]), sender=sys.argv[3], "
                "quality_gate=False); print(r['status'], r['visits_loaded'])")
        d = timed_rss([sys.executable, "-c", load, db.url, str(biggest), biggest.parent.name],
                      dict(env, RPU_DATA_DIR=str(tmp / "data-one")))
        if d["rc"] != 0 or not d["out"].startswith("accepted"):
            raise RuntimeError(f"the load of {biggest.name} failed: {d['out']} {d['err'][-2000:]}")
    note("(c) import great_expectations alone …")
    c = timed_rss([sys.executable, "-c", "import great_expectations"], env)
    naive_visits, naive_skipped = map(int, b["out"].split())
    target = b["s"] + c["s"] + 1
    figures = {"files": len(files), "visits": visits, "rpu_ingest_s": round(a["s"], 2),
               "rpu_ingest_peak_rss_mb": round(a["peak_rss_mb"], 1), "naive_s": round(b["s"], 2),
               "naive_files_skipped": naive_skipped, "gx_import_s": round(c["s"], 2), "target_s": round(target, 2),
               "within_target": a["s"] <= target, "one_file_visits": int(d["out"].split()[1]),
               "one_file_s": round(d["s"], 2), "one_file_peak_rss_mb": round(d["peak_rss_mb"], 1),
               "one_file_within_target": d["s"] <= 0.5 and d["peak_rss_mb"] <= 120}
    rows = [("files, visits", f"{len(files)}, {visits:,}"), None,
            ("(a) rpu ingest (gate included)", f"{a['s']:.2f} s, peak RSS {a['peak_rss_mb']:.0f} MiB"),
            ("(b) naive script", f"{b['s']:.2f} s ({naive_visits:,} visits, {naive_skipped} file(s) skipped)"),
            ("(c) import great_expectations", f"{c['s']:.2f} s"), None,
            ("target (b) + (c) + 1 s", f"{target:.2f} s — {'yes' if a['s'] <= target else 'NO'}"), None,
            ("(d) load of the biggest file alone", f"{d['s']:.2f} s, peak RSS {d['peak_rss_mb']:.0f} MiB "
             f"({d['out'].split()[1]} visits; target ≤ 0.5 s and ≤ 120 MiB: "
             f"{'yes' if d['s'] <= 0.5 and d['peak_rss_mb'] <= 120 else 'NO'})")]
    return rows, figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", help="postgresql:// URL of a server to use instead of starting one")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--day", default="2026-11-02", help="the send day (default 2026-11-02)")
    args = p.parse_args(argv)
    return run_benchmark(run, args, title="RPU night of the demo region through rpu ingest",
                         prefix="rpu-bench-night-")


if __name__ == "__main__":
    sys.exit(main())
