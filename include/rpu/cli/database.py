"""`rpu db migrate` (the schema of a regional database) and `rpu geo load` (the PMSI geographic table)."""
from __future__ import annotations

from pathlib import Path

from rpu import geo, store
from rpu.cli.common import add_db_arg, national_db, region_db
from rpu.national import schema as national_schema


def add_db(sub) -> None:
    db = sub.add_parser("db", help="regional database administration")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = dbsub.add_parser("migrate", help="apply the schema migrations (versioned, re-runnable)")
    m.add_argument("--region", help="region code (default: the only region of the region files)")
    m.add_argument("--db", metavar="URL", help="PostgreSQL URL of the database (default: $RPU_DB_URL, else the "
                                               "region's Airflow connection; with --national: "
                                               "$RPU_NATIONAL_DB_URL, else the connection rpu_national_db)")
    m.add_argument("--national", action="store_true",
                   help="apply the national (ATIH) schema instead of the regional one (docs/atih.md)")
    m.set_defaults(func=cmd_db_migrate)


def add_geo(sub) -> None:
    g = sub.add_parser("geo", help="postal code → PMSI geographic code table (ATIH anonymisation)")
    gsub = g.add_subparsers(dest="geo_command", required=True, metavar="ACTION")
    gl = gsub.add_parser("load", help="replace the table with a CSV file (cp;code_geo), used until another load",
                         description="Replace the postal code → PMSI geographic code table with a CSV file "
                                     "(cp;code_geo). The ATIH sends use it until another load; a region's "
                                     "atih.geo_table file is loaded again only when its content changes.")
    gl.add_argument("--region", help="region code (default: the only region of the region files)")
    add_db_arg(gl)
    gl.add_argument("--file", required=True)
    gl.set_defaults(func=cmd_geo_load)


def cmd_db_migrate(args) -> int:
    applied = national_schema.migrate(national_db(args)) if args.national else store.migrate(region_db(args))
    what = "national database schema" if args.national else "database schema"
    print(f"applied: {', '.join(applied)}" if applied else f"{what} is up to date")
    return 0


def cmd_geo_load(args) -> int:
    with store.connection(region_db(args)) as conn:
        n = geo.load(conn, Path(args.file))
    print(f"pmsi_geo: {n} postal codes loaded from {args.file}; the ATIH sends use this table until another load "
          "(or a change of the file the region names in atih.geo_table)")
    return 0
