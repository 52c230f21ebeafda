"""`rpu validate` (the checks, without a database) and `rpu ingest` (check and load, as the intake DAG does)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rpu import gate_ahead, intake
from rpu.checks import check_file
from rpu.cli.common import add_db_arg, region_db, region_of, the_region
from rpu.quality import gx


def add_validate(sub) -> None:
    v = sub.add_parser("validate", help="check RPU files without a database (what the concentrator would do)",
                       description="Check RPU files exactly as the concentrator does, without storing anything. "
                                   "Exit 0 when every file is accepted, 1 when one is rejected.")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--region", help="region code: also check that the FINESS is declared there")
    v.add_argument("--sender", metavar="FINESS", help="the depositing establishment (as its SFTP directory)")
    v.add_argument("--json", action="store_true", help="one JSON object per file and per line")
    v.add_argument("--quality", action="store_true",
                   help="also run the quality suites (Great Expectations, include/expectations) on the accepted "
                        "visits, in memory; JSON: a `quality` list (name, success, unexpected_count, "
                        "unexpected_percent…). A failed expectation does not change the exit code")
    v.set_defaults(func=cmd_validate)



def add_ingest(sub) -> None:
    i = sub.add_parser("ingest", help="check and load files into the regional database (as the intake DAG does)")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(i)
    i.add_argument("--sender", metavar="FINESS", help="the depositing establishment (default: the file's FINESS)")
    i.set_defaults(func=cmd_ingest)



def cmd_validate(args) -> int:
    region = region_of(args)
    any_rejected = False
    for f in args.files:
        path = Path(f)
        if not path.is_file():
            print(f"rpu validate: {f}: no such file", file=sys.stderr)
            return 2
        runs = None
        if args.quality:
            report, runs = gx.check_file_quality(path, region, args.sender, name=str(path))
        else:
            report = check_file(path, region, args.sender, name=str(path))
        any_rejected |= not report.accepted
        if args.json:
            d = report.as_dict()
            if args.quality:   # FEDORU: a failed expectation never rejects a file (the exit code ignores it)
                d["quality"] = None if runs is None else [
                    {"name": o["name"], "suite": r["suite"], "success": o["success"],
                     "unexpected_count": o["unexpected_count"], "unexpected_percent": o["unexpected_percent"],
                     "observed_value": o["observed_value"],
                     "blocking": bool(region and o["name"] in region.quality.blocking)}
                    for r in runs for o in r["results"]]
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            print(_human(report, runs), flush=True)
    return 1 if any_rejected else 0


def _human(report, quality_runs=None) -> str:
    d = report.as_dict()
    head = "ACCEPTÉ" if report.accepted else "REJETÉ"
    lines = [f"{d['file']}: {head} — FINESS {d['finess'] or '?'}, période {d['period_start'] or '…'} → "
             f"{d['period_end'] or '…'}, {d['visits']} passages ({d['visits_rejected']} rejetés, "
             f"{d['visits_flagged']} avec anomalie de qualité)"]
    lines += [f"  erreur    {p}" for p in report.errors]
    lines += [f"  attention {p}" for p in report.warnings]
    lines += [f"  qualité   [{rule}] {n} passage(s)" for rule, n in sorted(report.flags.items())]
    for r in quality_runs or ():
        failed = [o for o in r["results"] if not o["success"]]
        lines.append(f"  suite     {r['suite']} v{r['version']} : {len(r['results']) - len(failed)}/"
                     f"{len(r['results'])} attentes satisfaites")
        for o in failed:
            what = (f"{o['unexpected_count']} ({o['unexpected_percent']:.1f} %)" if o["unexpected_percent"] is not None
                    else f"valeur observée {o['observed_value']}")
            lines.append(f"  attente   [{o['name']}] non satisfaite : {what}")
    return "\n".join(lines)


def cmd_ingest(args) -> int:
    from tqdm import tqdm


    region = the_region(args)
    db = region_db(args, region)
    worst = 0
    # the gate's process is forked now, before any connection: it imports GX while the files load
    with gate_ahead.GateAhead(region, db) as ahead:
        for f in args.files:
            # the gate is left to the one run after all the files (Great Expectations set up once)
            with tqdm(desc=Path(f).name, unit=" visits", unit_scale=True, disable=None, file=sys.stderr) as bar:
                r = intake.ingest_path(region, db, Path(f), sender=args.sender, progress=bar.update,
                                       quality_gate=False)
            print(f"{f}: {r['status']} — {r['visits_loaded']} visits loaded, {r['visits_rejected']} rejected, "
                  f"{r['visits_flagged']} flagged" + (f", days kept newer: {len(r['days_kept_newer'])}"
                                                       if r["days_kept_newer"] else ""), flush=True)
            for e in r["errors"][:10]:
                print(f"  [{e['rule']}] line {e.get('line')}, visit {e.get('visit')}: {e['message']}")
            if r["status"] == "rejected":
                worst = 1
        judged = ahead.run()
    print(f"quality gate: {len(judged)} batch(es) judged" + "".join(
        f"\n  {j['file']}: {j['quality']}" + (" — QUARANTINED" if j["quarantined"] else "") for j in judged),
        flush=True)
    return worst
