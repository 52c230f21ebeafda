"""`rpu release`: release a batch the quality gate quarantined."""
from __future__ import annotations

import getpass
import os
import sys

from rpu import store
from rpu.config import get_region
from rpu.quality.release import NotQuarantined, release


def add_release(sub) -> None:
    p = sub.add_parser(
        "release", help="release a batch the quality gate quarantined (its visits are forwarded again)",
        description="Release a file whose batch the quality gate quarantined (a blocking expectation failed): "
                    "its stored visits are included again in the InVS, ATIH and ARS exports. Records who and "
                    "when; releasing a released file changes nothing. Exit 0, 1 when the file is not in "
                    "quarantine.")
    p.add_argument("--region", required=True)
    p.add_argument("--db", required=True, metavar="URL")
    p.add_argument("--file-id", required=True, type=int, metavar="N", help="received file id (see its receipt)")
    p.add_argument("--by", help="who releases it (default: the operating-system user)")
    p.set_defaults(func=cmd_release)


def cmd_release(args) -> int:
    get_region(args.region)   # a known region (its file names the database's owner)
    by = args.by or os.environ.get("SUDO_USER") or getpass.getuser()
    with store.connection(args.db) as conn:
        try:
            r = release(conn, args.file_id, by)
        except NotQuarantined as exc:
            print(f"rpu release: {exc}", file=sys.stderr)
            return 1
    when = r["released_at"].isoformat(sep=" ", timespec="seconds")
    if r["already"]:
        print(f"file #{r['file_id']} {r['file']} ({r['etab']}): already released on {when} by {r['released_by']}")
    else:
        print(f"file #{r['file_id']} {r['file']} ({r['etab']}): released on {when} by {r['released_by']} "
              f"(was held for {', '.join(r['expectations'])}); its visits go out with the next exports")
    return 0
