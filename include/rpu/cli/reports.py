"""`rpu report transmissions` and `rpu report quality` (rpu.reports)."""
from __future__ import annotations

import argparse
import sys
from datetime import date

from rpu import reports, store
from rpu.cli.common import add_db_arg, region_db, the_region
from rpu.reports import FORMATS


def add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="reports: transmissions per month (the ATIH table), data quality (FEDORU)",
        description="Reports on the regional database (docs/reports.md). Exit 0, 2 on bad arguments.")
    sub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    t = sub.add_parser(
        "transmissions", help="files received and RPUs per establishment and month, cumulative, vs. sent to ATIH",
        description="Per establishment and month of YEAR: accepted files (by EXTRACT month) and stored RPUs (by "
                    "entry month), cumulative from 1 January to the end of each month as ATIH shows them, and the "
                    "RPU count of the ATIH file sent for that month (send ledger) with whether it matches.")
    t.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(t)
    t.add_argument("--year", required=True, type=_year, metavar="YYYY")
    t.add_argument("--format", choices=FORMATS, default="table")
    t.set_defaults(func=cmd_transmissions)
    q = sub.add_parser(
        "quality", help="completeness and exploitabilité per item and establishment, flagged visits per rule",
        description="FEDORU completeness and exploitabilité of every RPU item per establishment and for the "
                    "region, and the share of visits flagged per quality rule, over the visits entered from "
                    "--from to --to (inclusive).")
    q.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(q)
    q.add_argument("--from", dest="start", required=True, type=_day, metavar="YYYY-MM-DD")
    q.add_argument("--to", dest="end", required=True, type=_day, metavar="YYYY-MM-DD")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_quality)


def _year(text: str) -> int:
    if not (len(text) == 4 and text.isdigit() and 2000 <= int(text) <= 2999):
        raise argparse.ArgumentTypeError(f"{text!r} is not a year (YYYY, 2000–2999)")
    return int(text)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_transmissions(args) -> int:
    region = the_region(args)
    with store.connection(region_db(args, region)) as conn:
        report = reports.transmissions(conn, region, args.year)
    sys.stdout.write(reports.render(report, args.format))
    return 0


def cmd_quality(args) -> int:
    if args.end < args.start:
        print(f"rpu report quality: --to {args.end} is before --from {args.start}", file=sys.stderr)
        return 2
    region = the_region(args)
    with store.connection(region_db(args, region)) as conn:
        report = reports.quality(conn, region, args.start, args.end)
    sys.stdout.write(reports.render(report, args.format))
    return 0
