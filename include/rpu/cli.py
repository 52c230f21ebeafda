"""The `rpu` command: what hospital IT, operators, scripts and tests run. Each subcommand calls the same
functions as the DAGs.

Exit codes: 0 success, 1 a file was rejected / a check failed, 2 usage error (bad arguments, bad config).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rpu.config import ConfigError, get_region


def _region(args):
    return get_region(args.region) if getattr(args, "region", None) else None


def cmd_validate(args) -> int:
    from rpu.checks import check_file

    region = _region(args)
    any_rejected = False
    for f in args.files:
        path = Path(f)
        if not path.is_file():
            print(f"rpu validate: {f}: no such file", file=sys.stderr)
            return 2
        report = check_file(path, region, args.sender, name=str(path))
        any_rejected |= not report.accepted
        if args.json:
            print(json.dumps(report.as_dict(), ensure_ascii=False), flush=True)
        else:
            print(_human(report), flush=True)
    return 1 if any_rejected else 0


def _human(report) -> str:
    d = report.as_dict()
    head = "ACCEPTÉ" if report.accepted else "REJETÉ"
    lines = [f"{d['file']}: {head} — FINESS {d['finess'] or '?'}, période {d['period_start'] or '…'} → "
             f"{d['period_end'] or '…'}, {d['visits']} passages ({d['visits_rejected']} rejetés, "
             f"{d['visits_flagged']} avec anomalie de qualité)"]
    lines += [f"  erreur    {p}" for p in report.errors]
    lines += [f"  attention {p}" for p in report.warnings]
    lines += [f"  qualité   [{rule}] {n} passage(s)" for rule, n in sorted(report.flags.items())]
    return "\n".join(lines)


def cmd_db_migrate(args) -> int:
    from rpu import store

    applied = store.migrate(args.db)
    print(f"applied: {', '.join(applied)}" if applied else "database schema is up to date")
    return 0


def cmd_ingest(args) -> int:
    from tqdm import tqdm

    from rpu import intake

    region = get_region(args.region)
    worst = 0
    for f in args.files:
        with tqdm(desc=Path(f).name, unit=" visits", unit_scale=True, disable=None, file=sys.stderr) as bar:
            r = intake.ingest_path(region, args.db, Path(f), sender=args.sender, progress=bar.update)
        print(f"{f}: {r['status']} — {r['visits_loaded']} visits loaded, {r['visits_rejected']} rejected, "
              f"{r['visits_flagged']} flagged" + (f", days kept newer: {len(r['days_kept_newer'])}"
                                                   if r["days_kept_newer"] else ""), flush=True)
        for e in r["errors"][:10]:
            print(f"  [{e['rule']}] line {e.get('line')}, visit {e.get('visit')}: {e['message']}")
        if r["status"] == "rejected":
            worst = 1
    return worst


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rpu", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check RPU files without a database (what the concentrator would do)",
                       description="Check RPU files exactly as the concentrator does, without storing anything. "
                                   "Exit 0 when every file is accepted, 1 when one is rejected.")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--region", help="region code: also check that the FINESS is declared there")
    v.add_argument("--sender", metavar="FINESS", help="the depositing establishment (as its SFTP directory)")
    v.add_argument("--json", action="store_true", help="one JSON object per file and per line")
    v.set_defaults(func=cmd_validate)

    db = sub.add_parser("db", help="regional database administration")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = dbsub.add_parser("migrate", help="apply the schema migrations (versioned, re-runnable)")
    m.add_argument("--db", required=True, metavar="URL", help="PostgreSQL URL of the regional database")
    m.set_defaults(func=cmd_db_migrate)

    i = sub.add_parser("ingest", help="check and load files into the regional database (as the intake DAG does)")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.add_argument("--region", required=True)
    i.add_argument("--db", required=True, metavar="URL")
    i.add_argument("--sender", metavar="FINESS", help="the depositing establishment (default: the file's FINESS)")
    i.set_defaults(func=cmd_ingest)

    from rpu import synth

    synth.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"rpu: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
