"""What the commands share: the region of `--region`, the database of a command, dates as arguments,
plain-text tables.

The database of a command, first found of:
  1. `--db URL` (`--national-db URL`);
  2. the variable RPU_DB_URL (national database: RPU_NATIONAL_DB_URL);
  3. the Airflow connection the region file names (`connections.db`, default `rpu_<code>_db`; national:
     `rpu_national_db`, config/national.yaml), looked up as Airflow does: AIRFLOW_CONN_<ID> variable, secrets
     backend, metadata database — passwords stay out of the command line, the shell history and `ps`.
"""
from __future__ import annotations

import argparse
import os
from datetime import date

from rpu.config import ConfigError, Region, get_region, load_regions
from rpu.connections import find_db_url
from rpu.national import settings

ENV_DB = "RPU_DB_URL"
ENV_NATIONAL_DB = "RPU_NATIONAL_DB_URL"
DB_HELP = (f"PostgreSQL URL of the regional database (default: ${ENV_DB}, else the region's Airflow connection, "
           "connections.db of its region file)")
NATIONAL_DB_HELP = (f"PostgreSQL URL of the national database (default: ${ENV_NATIONAL_DB}, else the Airflow "
                    "connection rpu_national_db, connections.db of config/national.yaml)")


def region_of(args):
    """The region named by `--region`, or None when the command was given none."""
    return get_region(args.region) if getattr(args, "region", None) else None


def the_region(args) -> Region:
    """The region named by `--region`, else the only region of the region files (ConfigError when several)."""
    if getattr(args, "region", None):
        return get_region(args.region)
    regions = load_regions()
    if len(regions) != 1:
        raise ConfigError(f"--region is required: {len(regions)} regions in the region files "
                          f"({', '.join(r.code for r in regions) or 'none'})")
    return regions[0]


def add_db_arg(parser, *, national: bool = False, flag: str = "--db") -> None:
    parser.add_argument(flag, metavar="URL", help=NATIONAL_DB_HELP if national else DB_HELP)


def _resolve(given: str | None, env: str, connection, flag: str) -> str:
    """`given`, else $env, else the URL of the Airflow connection `connection()` names: (conn id, for what)."""
    if given:
        return given
    if os.environ.get(env):
        return os.environ[env]
    conn_id, what = connection()
    url = find_db_url(conn_id)     # imports Airflow: only when neither the option nor the variable is given
    if url is None:
        raise ConfigError(f"no database for {what}: no {flag}, no {env} variable, and no Airflow connection "
                          f"{conn_id!r} (looked up as Airflow does: the AIRFLOW_CONN_{conn_id.upper()} variable, "
                          "the secrets backend, the metadata database)")
    return url


def region_db(args, region: Region | None = None) -> str:
    """The regional database of the command: --db, else $RPU_DB_URL, else the region's Airflow connection
    (`region`, else the region of --region or the only one)."""
    def connection():
        r = region or the_region(args)
        return r.db_conn_id, f"region {r.code}"

    return _resolve(getattr(args, "db", None), ENV_DB, connection, "--db")


def national_db(args, attr: str = "db", flag: str = "--db") -> str:
    """The national database of the command: the option, else $RPU_NATIONAL_DB_URL, else its Airflow connection."""
    def connection():
        return settings.load().db_conn_id, "the national (ATIH) side"

    return _resolve(getattr(args, attr, None), ENV_NATIONAL_DB, connection, flag)


def date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(x) for x in cells])
