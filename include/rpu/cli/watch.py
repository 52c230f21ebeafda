"""`rpu watch`: what the watch DAG finds at a cut-off, nothing recorded, nothing mailed (rpu.watch)."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from rpu import store
from rpu.cli.common import add_db_arg, region_db, the_region
from rpu.watch import mails, rules


def add_watch(sub) -> None:
    p = sub.add_parser(
        "watch", help="what the watch DAG finds at a cut-off (nothing recorded, nothing mailed)",
        description="Print what the <region>_watch DAG would find at the latest cut-off at or before --at "
                    "(default: now): missing transmissions, rejected files, abnormal days, DP coding drops, "
                    "shadow establishments ready to switch. Nothing is recorded and no mail is sent. "
                    "Exit 0 when nothing is wrong, 1 otherwise.")
    p.add_argument("--region", help="region code (config/regions/CODE.yaml; default: the only region)")
    add_db_arg(p)
    p.add_argument("--at", metavar="'YYYY-MM-DD HH:MM'",
                   help="the moment to judge, local time of the region (default: now)")
    p.add_argument("--json", action="store_true", help="the findings as one JSON object")
    p.set_defaults(func=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    region = the_region(args)
    if args.at:
        try:
            now = datetime.strptime(args.at.strip(), "%Y-%m-%d %H:%M").replace(tzinfo=region.tz)
        except ValueError:
            print(f"rpu watch: --at {args.at!r}: expected 'YYYY-MM-DD HH:MM' (local time of the region)",
                  file=sys.stderr)
            return 2
    else:
        now = datetime.now(region.tz)
    with store.connection(region_db(args, region)) as conn:
        f = rules.findings(conn, region, now)
    if args.json:
        print(json.dumps(f.to_dict(), ensure_ascii=False, indent=1))
    else:
        print(mails.describe(f))
    return 1 if f.anything else 0
