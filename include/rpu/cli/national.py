"""The ATIH side of the `rpu` command: `rpu syrius receive`, `rpu report national`
and `rpu report reconciliation`. Each calls the functions the `syrius_reception` DAG and the dashboard call.

Exit codes: 0 success (every file accepted), 1 a file refused, 2 usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rpu import store
from rpu.cli.common import add_db_arg, national_db, region_db, the_region
from rpu.config import get_region, load_regions
from rpu.national import reception, reconciliation, report, settings


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _year(text: str) -> int:
    if not (len(text) == 4 and text.isdigit() and 2000 <= int(text) <= 2999):
        raise argparse.ArgumentTypeError(f"{text!r} is not a year (YYYY, 2000–2999)")
    return int(text)


def cmd_receive(args) -> int:
    national = settings.load()
    region = get_region(args.region)
    db = national_db(args)
    worst = 0
    for f in args.files:
        path = Path(f)
        if not path.is_file():
            print(f"rpu syrius receive: {f}: no such file", file=sys.stderr)
            return 2
        r = reception.receive_path(national, region, db, path)
        if args.json:
            print(json.dumps(r, ensure_ascii=False), flush=True)
        else:
            what = (f"[{r['rule']}] {r['message']}" if r["status"] == "rejected" else
                    f"FINESS {r['finess']} ordre {r['ordre']}, {r['period_start']} → {r['period_end']}, {r['rpu']} RPU")
            print(f"{f}: {reception.STATUS_WORDS[r['status']]} — {what}", flush=True)
        if r["status"] == "rejected":
            worst = 1
    return worst


def add_national(sub: argparse._SubParsersAction) -> None:
    """Add the ATIH side's commands to the `rpu` parser (after the `report` command exists: it adds to it).
    `rpu db migrate --national` is in rpu.cli.database."""
    s = sub.add_parser("syrius", help="ATIH side (Syrius platform): receive the regions' cumulative files")
    ssub = s.add_subparsers(dest="syrius_command", required=True, metavar="ACTION")
    r = ssub.add_parser("receive", help="check and record ATIH files by hand (as the syrius_reception DAG does)",
                        description="Check local ATIH files as the syrius_reception DAG does (anonymised layout, "
                                    "FINESS of the region, period from 1 January) and record them in the national "
                                    "database. Exit 0 when every file is accepted (or already received), 1 when "
                                    "one is refused, 2 on bad arguments.")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--region", required=True, help="the region whose drop directory the files come from")
    add_db_arg(r, national=True)
    r.add_argument("--json", action="store_true", help="one receipt (JSON) per file and per line")
    r.set_defaults(func=cmd_receive)

    rep = _subparsers(sub.choices["report"])
    n = rep.add_parser("national", help="the national page: files and RPU received by ATIH per region and month",
                       description="ATIH's presentation page from the national database: per region and month M of "
                                   "YEAR, the cumulative files completing M (one per FINESS_ordre, its latest), their "
                                   "establishments and RPU, and the 'Total général' row (docs/atih.md). With "
                                   "--region: that region per establishment (FINESS_ordre) and month.")
    add_db_arg(n, national=True)
    n.add_argument("--year", required=True, type=_year, metavar="YYYY")
    n.add_argument("--region", help="drill down into one region (per establishment and month)")
    n.add_argument("--format", choices=("table", "csv", "json"), default="table")
    n.set_defaults(func=cmd_report_national)

    rc = rep.add_parser("reconciliation", help="a region's ATIH sends (its ledger) against what ATIH received",
                        description="For every file the region's send ledger says it sent to ATIH for YEAR: "
                                    "'reçu, conforme' (same sha256 and RPU count), 'écart', 'refusé', 'non reçu' "
                                    "(nothing N hours after the send, reconciliation.missing_after_hours) or 'en "
                                    "attente' (docs/atih.md).")
    rc.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(rc)
    add_db_arg(rc, national=True, flag="--national-db")
    rc.add_argument("--year", required=True, type=_year, metavar="YYYY")
    rc.add_argument("--format", choices=("table", "csv", "json"), default="table")
    rc.set_defaults(func=cmd_report_reconciliation)



def cmd_report_national(args) -> int:
    regions = load_regions()
    with store.connection(national_db(args)) as conn:
        if args.region:
            region = get_region(args.region)
            data = report.establishments(conn, args.year, region)
            if args.format == "json":
                sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
            else:
                sys.stdout.write(report.render_establishments(data, args.format))
            return 0
        data = report.grid(conn, args.year, regions)
    sys.stdout.write(report.render(data, args.format))
    return 0


def cmd_report_reconciliation(args) -> int:
    region = the_region(args)
    result = reconciliation.reconcile_urls(region_db(args, region), national_db(args, "national_db", "--national-db"),
                                           settings.load(), region, args.year)
    sys.stdout.write(reconciliation.render(result, args.format))
    return 0
