"""The `rpu` command: what hospital IT, operators, scripts and tests run. Each subcommand calls the same
functions as the DAGs.

Exit codes: 0 success, 1 a file was rejected / a check failed, 2 usage error (bad arguments, bad config).

The database of a command: --db URL, else $RPU_DB_URL, else the Airflow connection of the region (--region, or
the only region; `connections.db` of its region file, default rpu_<code>_db) as Airflow finds it (AIRFLOW_CONN_*
variable, secrets backend, metadata database). National database: --db / --national-db, else
$RPU_NATIONAL_DB_URL, else the connection rpu_national_db.
"""
from __future__ import annotations

import argparse
import sys

from rpu.cli import database, files, national, provision, quality, reports, roles, sends, status, synth, watch
from rpu.config import ConfigError
from rpu.geo import GeoTableError

# One module per command group; the order here is the order of `rpu --help`.
PARSERS = (files.add_validate, database.add_db, files.add_ingest, sends.add_export, sends.add_ledger,
           status.add_status, database.add_geo, synth.add_synth, quality.add_release, provision.add_region,
           provision.add_establishment, reports.add_report, watch.add_watch, roles.add_roles, roles.add_pools,
           national.add_national)   # after report.add_report: it adds to `report`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rpu", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, GeoTableError) as exc:
        print(f"rpu: {exc}", file=sys.stderr)
        return 2
