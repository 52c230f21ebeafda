"""`rpu status`: establishments, their last accepted file, consecutive days, ready to switch."""
from __future__ import annotations

import json

from rpu import store, transition
from rpu.cli.common import add_db_arg, date_arg, region_db, table, the_region


def add_status(sub) -> None:
    st = sub.add_parser("status", help="establishments: last accepted file, consecutive days, ready to switch")
    st.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(st)
    st.add_argument("--date", type=date_arg, help="reference day (default: today in the region's time zone)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)



def cmd_status(args) -> int:
    region = the_region(args)
    with store.connection(region_db(args, region)) as conn:
        rows = transition.establishments(conn, region, args.date)
    for r in rows:
        r["ready_to_switch"] = "READY TO SWITCH" if r["ready_to_switch"] else ""
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        print(table(rows, ["finess", "name", "status", "last_accepted", "consecutive_days", "ready_to_switch"]))
    return 0
