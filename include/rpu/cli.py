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
from rpu.geo import GeoTableError


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
        runs = None
        if args.quality:
            from rpu import quality

            report, runs = quality.check_file_quality(path, region, args.sender, name=str(path))
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
                     "blocking": bool(region and o["name"] in region.quality_blocking)}
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


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(x) for x in cells])


def cmd_export(args) -> int:
    from rpu import exports, store

    region = get_region(args.region)
    with store.connection(args.db) as conn:
        specs = exports.SPECS[args.recipient](conn, region, args.date)
        done = exports.write_to_dir(conn, region, specs, Path(args.out))
    for d in done:
        print(f"{d['file']}: {d['visits']} visits, {d['period_start']} → {d['period_end']}, sha256 {d['sha256'][:16]}…"
              + (f" (held back, left out: {', '.join(d['held_back'])})" if d["held_back"] else ""))
    if not done:
        print("no file: no establishment has data to send for that date")
    return 0


def cmd_ledger(args) -> int:
    from rpu import sends

    get_region(args.region)
    rows = sends.ledger(args.db, recipient=args.recipient, etab=args.finess, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=1))
    else:
        print(_table(rows, ["prepared_at", "recipient", "kind", "etab", "ordre", "period_start", "period_end",
                            "file_name", "visits", "extract", "status", "attempts"]))
    return 0


def cmd_status(args) -> int:
    from rpu import store, transition

    region = get_region(args.region)
    with store.connection(args.db) as conn:
        rows = transition.establishments(conn, region, args.date)
    for r in rows:
        r["ready_to_switch"] = "READY TO SWITCH" if r["ready_to_switch"] else ""
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        print(_table(rows, ["finess", "name", "status", "last_accepted", "consecutive_days", "ready_to_switch"]))
    return 0


def cmd_geo_load(args) -> int:
    from rpu import geo, store

    with store.connection(args.db) as conn:
        n = geo.load(conn, Path(args.file))
    print(f"pmsi_geo: {n} postal codes loaded from {args.file}; the ATIH sends use this table until another load "
          "(or a change of the file the region names in atih.geo_table)")
    return 0


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
    v.add_argument("--quality", action="store_true",
                   help="also run the quality suites (Great Expectations, include/expectations) on the accepted "
                        "visits, in memory; JSON: a `quality` list (name, success, unexpected_count, "
                        "unexpected_percent…). A failed expectation does not change the exit code")
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

    e = sub.add_parser("export", help="write the files a send DAG would send, into a directory (nothing sent)",
                       description="Build exactly the files the <region>_send_invs / _export_ars / _send_atih DAG "
                                   "would send for a run on DATE (same code), into OUT.")
    e.add_argument("recipient", choices=["invs", "ars", "atih"])
    e.add_argument("--region", required=True)
    e.add_argument("--db", required=True, metavar="URL")
    e.add_argument("--date", required=True, type=_date, help="the run's date (YYYY-MM-DD, region's local date)")
    e.add_argument("--out", required=True, metavar="DIR")
    e.set_defaults(func=cmd_export)

    led = sub.add_parser("ledger", help="list what was sent (the send ledger)")
    led.add_argument("--region", required=True)
    led.add_argument("--db", required=True, metavar="URL")
    led.add_argument("--recipient", choices=["invs", "ars", "atih"])
    led.add_argument("--finess")
    led.add_argument("--limit", type=int, default=200)
    led.add_argument("--json", action="store_true")
    led.set_defaults(func=cmd_ledger)

    st = sub.add_parser("status", help="establishments: last accepted file, consecutive days, ready to switch")
    st.add_argument("--region", required=True)
    st.add_argument("--db", required=True, metavar="URL")
    st.add_argument("--date", type=_date, help="reference day (default: today in the region's time zone)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    g = sub.add_parser("geo", help="postal code → PMSI geographic code table (ATIH anonymisation)")
    gsub = g.add_subparsers(dest="geo_command", required=True, metavar="ACTION")
    gl = gsub.add_parser("load", help="replace the table with a CSV file (cp;code_geo), used until another load",
                         description="Replace the postal code → PMSI geographic code table with a CSV file "
                                     "(cp;code_geo). The ATIH sends use it until another load; a region's "
                                     "atih.geo_table file is loaded again only when its content changes.")
    gl.add_argument("--db", required=True, metavar="URL")
    gl.add_argument("--file", required=True)
    gl.set_defaults(func=cmd_geo_load)

    from rpu import synth
    from rpu import quality
    from rpu import provision
    from rpu import reports
    from rpu import watch
    from rpu import roles
    from rpu.national import commands as national_commands

    synth.register(sub)
    quality.register(sub)
    provision.register(sub)
    reports.register(sub)
    watch.register(sub)
    roles.register(sub)
    national_commands.register(sub)   # after `db` and `report`: it adds to them
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, GeoTableError) as exc:
        print(f"rpu: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
