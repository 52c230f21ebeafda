"""`rpu export` (the files a send DAG would send, into a directory) and `rpu ledger` (what was sent)."""
from __future__ import annotations

import json
from pathlib import Path

from rpu import exports, sends, store
from rpu.cli.common import add_db_arg, date_arg, region_db, table, the_region


def add_export(sub) -> None:
    e = sub.add_parser("export", help="write the files a send DAG would send, into a directory (nothing sent)",
                       description="Build exactly the files the <region>_send_invs / _export_ars / _send_atih DAG "
                                   "would send for a run on DATE (same code), into OUT.")
    e.add_argument("recipient", choices=["invs", "ars", "atih"])
    e.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(e)
    e.add_argument("--date", required=True, type=date_arg, help="the run's date (YYYY-MM-DD, region's local date)")
    e.add_argument("--out", required=True, metavar="DIR")
    e.set_defaults(func=cmd_export)



def add_ledger(sub) -> None:
    led = sub.add_parser("ledger", help="list what was sent (the send ledger)")
    led.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(led)
    led.add_argument("--recipient", choices=["invs", "ars", "atih"])
    led.add_argument("--finess")
    led.add_argument("--limit", type=int, default=200)
    led.add_argument("--json", action="store_true")
    led.set_defaults(func=cmd_ledger)



def cmd_export(args) -> int:
    region = the_region(args)
    with store.connection(region_db(args, region)) as conn:
        specs = exports.SPECS[args.recipient](conn, region, args.date)
        done = exports.write_to_dir(conn, region, specs, Path(args.out))
    for d in done:
        print(f"{d['file']}: {d['visits']} visits, {d['period_start']} → {d['period_end']}, sha256 {d['sha256'][:16]}…"
              + (f" (held back, left out: {', '.join(d['held_back'])})" if d["held_back"] else ""))
    if not done:
        print("no file: no establishment has data to send for that date")
    return 0


def cmd_ledger(args) -> int:
    region = the_region(args)
    rows = sends.ledger(region_db(args, region), recipient=args.recipient, etab=args.finess, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=1))
    else:
        print(table(rows, ["prepared_at", "recipient", "kind", "etab", "ordre", "period_start", "period_end",
                            "file_name", "visits", "extract", "status", "attempts"]))
    return 0


