"""`rpu release`: release a batch the quality gate quarantined."""
from __future__ import annotations

import getpass
import os
import sys

from rpu import store
from rpu.cli.common import add_db_arg, region_db, the_region
from rpu.quality.release import NotQuarantined, release


def add_release(sub) -> None:
    p = sub.add_parser(
        "release", help="release a batch the quality gate quarantined (its visits are forwarded again)",
        description="Release a file whose batch the quality gate quarantined (a blocking expectation failed): "
                    "its stored visits are included again in the InVS, ATIH and ARS exports. Records who and "
                    "when; releasing a released file changes nothing. Exit 0, 1 when the file is not in "
                    "quarantine.")
    p.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(p)
    p.add_argument("--file-id", required=True, type=int, metavar="N", help="received file id (see its receipt)")
    p.add_argument("--by", help="who releases it (default: the operating-system user)")
    p.add_argument("--reason", help="why it is released (kept with the release, as the release form's Motif)")
    p.set_defaults(func=cmd_release)


def cmd_release(args) -> int:
    region = the_region(args)   # a known region (its file names the database's connection)
    by = args.by or os.environ.get("SUDO_USER") or getpass.getuser()
    with store.connection(region_db(args, region)) as conn:
        try:
            r = release(conn, args.file_id, by, args.reason)
        except NotQuarantined as exc:
            print(f"rpu release: {exc}", file=sys.stderr)
            return 1
    when = r["released_at"].isoformat(sep=" ", timespec="seconds")
    if r["already"]:
        print(f"file #{r['file_id']} {r['file']} ({r['etab']}): already released on {when} by {r['released_by']}"
              + (f" ({r['reason']})" if r["reason"] else ""))
    else:
        print(f"file #{r['file_id']} {r['file']} ({r['etab']}): released on {when} by {r['released_by']} "
              f"(was held for {', '.join(r['expectations'])}); its visits go out with the next exports")
    return 0
