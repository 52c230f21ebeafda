"""One night of a region's intake: N daily files through the code path of the `<region>_intake` DAG.

    python bench/intake_day.py [--establishments N (default 12)] [--db URL] [--keep] [--seed S]

The demo region, widened to N establishments (the demo's twelve, then synthetic FINESS numbers with a valid key),
sends one realistic daily file each (`rpu.synth.daily`: each establishment's own size profile, a 7-day sliding
window; generation is not timed). The files are dropped into their inboxes on a local SFTP server
(rpu_dev.localservices.SftpServer). Then, in one spawned child process, timed from before the imports of
rpu.intake: what the DAG's tasks call, in order — `list_new_files` (two looks, `stable_seconds` 0),
`chunks` (the region's `intake.chunk_files`), `ingest_items` per chunk (download, archive copy, checks, load,
receipt, move: each file its own transaction), then `gate_run` (the run's one quality gate over every pending
batch, receipts written again). Airflow's own scheduling is not included (no scheduler here).

Figures (the last line of stdout, JSON): files, visits (loaded), seconds (the whole night, process start
excluded, imports included), seconds_per_file, gate_s (the gate alone, Great Expectations' import included),
gx_import_s (that import alone, timed first), gate_beyond_import_s (target of issue 13: ≤ 1 s),
chunks, peak_rss_mb (VmHWM of the child). Target of issue 13: an 80-establishment night ≤ 20 s.

Without --db, a PostgreSQL of our own is started (fast=True), as bench/ingest.py does.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_database, env_for_children, note, run_benchmark, run_measured  # noqa: E402

TARGET_80_S = 20.0


def wide_region(n: int):
    """The demo region with `n` establishments (its own first, then synthetic ones, all active)."""
    from rpu.config import Establishment, finess_with_key, get_region

    region = get_region("demo")
    ests = list(region.establishments[:n])
    k = 0
    while len(ests) < n:
        k += 1
        ests.append(Establishment(finess=finess_with_key(f"9901{k:04d}"), name=f"Établissement de banc {k}",
                                  status="active"))
    return region.adjusted(establishments=tuple(ests))


def night(n: int, host: str, port: int, username: str, password: str, db_url: str) -> dict:
    """In the child: the DAG's calls, timed from the imports on."""
    t0 = time.perf_counter()
    import paramiko

    from rpu import intake
    from rpu.sftp import Remote

    region = wide_region(n).adjusted(intake={"stable_seconds": 0})
    transport = paramiko.Transport((host, port))
    transport.connect(username=username, password=password)
    try:
        remote = Remote(paramiko.SFTPClient.from_transport(transport))
        items = intake.list_new_files(region, remote)
        chunks = intake.chunks(region, items)
        done = []
        for c in chunks:
            done += intake.ingest_items(region, c["files"], remote, db_url)
        loads_s = time.perf_counter() - t0
        g0 = time.perf_counter()
        from rpu.quality import gx
        gx.gx_module()                      # Great Expectations' import, timed apart: the gate's fixed cost
        gx_import_s = time.perf_counter() - g0
        judged = intake.gate_run(region, db_url, remote)
        gate_s = time.perf_counter() - g0
    finally:
        transport.close()
    return {"seconds": time.perf_counter() - t0, "loads_s": loads_s, "gate_s": gate_s, "gx_import_s": gx_import_s, "files": len(done),
            "visits": sum(r.get("visits_loaded") or 0 for r in done), "chunks": len(chunks),
            "statuses": sorted({r["status"] for r in done}), "judged": len(judged)}


def run(args, tmp: Path):
    from rpu.synth import daily
    from rpu_dev.localservices import SftpServer

    env_for_children(RPU_DATA_DIR=str(tmp / "data"))
    region = wide_region(args.establishments)
    day = date.fromisoformat(args.day)
    sftp_root = tmp / "sftp"
    note(f"generating one night of {args.establishments} establishments ({day}) …")
    g0 = time.perf_counter()
    files, visits = 0, 0
    for pf in daily.plan(region, start=day, days=1, seed=args.seed):
        path, nv = daily.write_planned(sftp_root / "_gen", pf, seed=args.seed)
        inbox = sftp_root / pf.finess / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        path.replace(inbox / path.name)
        files += 1
        visits += nv
    note(f"  {files} files, {visits:,} visits in {time.perf_counter() - g0:.1f} s")
    user, password = f"b{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with SftpServer(tmp / "sftp-server") as server, bench_database(args.db, keep=args.keep) as db:
        server.add_user(user, password, sftp_root)
        note("the night, as the intake DAG's tasks run it …")
        r = run_measured(night, args.establishments, server.host, server.port, user, password, db.url)
    per_file = r["seconds"] / max(1, r["files"])
    figures = {"files": r["files"], "visits": r["visits"], "seconds": round(r["seconds"], 2),
               "seconds_per_file": round(per_file, 3), "peak_rss_mb": round(r["peak_rss_mb"], 1),
               "gate_s": round(r["gate_s"], 2), "gx_import_s": round(r["gx_import_s"], 2),
               "gate_beyond_import_s": round(r["gate_s"] - r["gx_import_s"], 2), "loads_s": round(r["loads_s"], 2), "chunks": r["chunks"],
               "batches_gated": r["judged"]}
    rows = [("establishments", str(args.establishments)), ("files", f"{r['files']} ({', '.join(r['statuses'])})"),
            ("visits loaded", f"{r['visits']:,}"), ("chunks (mapped tasks)", str(r["chunks"])), None,
            ("loads (list, chunks, ingest)", f"{r['loads_s']:.2f} s"),
            ("gate (one, GX import included)", f"{r['gate_s']:.2f} s for {r['judged']} batches"),
            ("  of which GX import", f"{r['gx_import_s']:.2f} s (target: the rest ≤ 1 s)"),
            ("night", f"{r['seconds']:.2f} s, {per_file:.3f} s per file"),
            ("peak RSS", f"{r['peak_rss_mb']:.0f} MiB")]
    if args.establishments == 80:
        rows.append(("target (80: ≤ 20 s)", "yes" if r["seconds"] <= TARGET_80_S else "NO"))
    return rows, figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--establishments", type=int, default=12)
    p.add_argument("--db", help="postgresql:// URL of a server to use instead of starting one")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--day", default="2026-11-02", help="the send day (default 2026-11-02)")
    args = p.parse_args(argv)
    if args.establishments < 1:
        p.error("--establishments must be at least 1")
    return run_benchmark(run, args, title=f"RPU intake night — {args.establishments} establishments",
                         prefix="rpu-bench-day-")


if __name__ == "__main__":
    sys.exit(main())
