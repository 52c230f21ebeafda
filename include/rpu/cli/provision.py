"""`rpu region add` and `rpu establishment add`: provisioning a region, then its establishments.

    rpu region add --code CODE --name NAME --timezone TZ [--establishments FILE.csv] [--old-concentrator]
                   [--admin-db URL] [--db-host HOST[:PORT]] [--rotate-password]
                   [--sftp-admin CONN_ID_OR_URL] [--regions-dir DIR] [--dags-dir DIR] [--create-connections]
    rpu establishment add --region CODE --finess F --name N [--finess-ej E] [--status active|shadow]
                   [--contact EMAIL] [--update] [--sftp-admin CONN_ID_OR_URL] [--regions-dir DIR]

Everything is checked before anything changes (exit 2 and every problem listed, nothing created); then the
servers are reached (exit 1 when one cannot be, still nothing created); then, in this order: the PostgreSQL
role and database (rpu.provision.database), the SFTP tree (rpu.provision.sftptree), the region file
(rpu.provision.regionfile), the region's DAG file (rpu.dagset.stub_text), and the Airflow connections
(rpu.provision.connections: printed, or created with `--create-connections`). See docs/provisioning.md.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rpu import dagset, pools
from rpu.config import PROJECT_DIR, ConfigError, Region, load_region, parse_region, region_files, regions_dir
from rpu.provision.connections import connection_specs, create_connections, import_pools
from rpu.provision.database import (ENV_ADMIN_DB, _conn_params, _where, check_admin_url, db_preflight, new_password,
                                    provision_database)
from rpu.provision.errors import ProvisionError, ServiceError, fail
from rpu.provision.regionfile import (CODE_RE, EMAIL_RE, STATUSES, _dump, _other_regions_declaring, _plain, _yaml,
                                      establishment_problems, merge_alerts, merge_establishments, new_region_doc,
                                      read_establishments_csv, timezone_problem, write_atomic)
from rpu.provision.sftptree import (ENV_SFTP_ADMIN, ENV_SFTP_PASSWORD, KINDS, _sftp_admin_arg, create_tree,
                                    open_sftp_admin)

SFTP_HELP = (f"intake SFTP server's admin account: an Airflow connection id (host key verified; extra base_dir), "
             f"or sftp://user@host:port/BASE?host_key=<type>%%20<base64> (or known_hosts=PATH; key_file=PATH; "
             f"password in ${ENV_SFTP_PASSWORD}); default ${ENV_SFTP_ADMIN}")
RDIR_HELP = "directory of the region files (default $RPU_REGIONS_DIR, else config/regions)"


def add_region(sub) -> None:
    r = sub.add_parser("region", help="provision a region (region file, database, SFTP tree, DAG file)")
    rsub = r.add_subparsers(dest="region_command", required=True, metavar="ACTION")
    a = rsub.add_parser(
        "add", help="create everything a new region needs (idempotent)",
        description="Create a region: its region file, its PostgreSQL database and least-privilege role (schema "
                    "applied), its establishments' SFTP trees, its DAG file, and the Airflow connections to create. "
                    "Everything is checked first; a rerun changes nothing. Exit 0 done, 1 a server failed, "
                    "2 refused (bad input; nothing changed).")
    a.add_argument("--code", required=True, help="region code: [a-z][a-z0-9_], e.g. ara, guyane")
    a.add_argument("--name", required=True, help="region name")
    a.add_argument("--timezone", required=True, help="IANA time zone, e.g. Europe/Paris, America/Cayenne")
    a.add_argument("--establishments", metavar="FILE.csv",
                   help="establishments, ';'-separated with a header: finess;name[;finess_ej[;status[;contact]]]")
    a.add_argument("--old-concentrator", action="store_true",
                   help="the region already has a concentrator: new establishments start in shadow")
    a.add_argument("--ars-email", metavar="EMAIL", action="append",
                   help="the ARS's watch address (alerts.ars; repeat for several): required once an establishment "
                        "is active, unless --ars-none")
    a.add_argument("--ars-none", action="store_true",
                   help="run without ARS mails, on purpose (alerts.ars_none: true)")
    a.add_argument("--ops-email", metavar="EMAIL", action="append",
                   help="operations' address (alerts.ops; repeat for several): failed runs, late sends, refused "
                        "addresses")
    a.add_argument("--admin-db", metavar="URL", default=os.environ.get(ENV_ADMIN_DB),
                   help=f"PostgreSQL admin URL (CREATEROLE+CREATEDB; password in ~/.pgpass or PGPASSWORD rather than "
                        f"in the URL); default ${ENV_ADMIN_DB}; without it the database step is skipped")
    a.add_argument("--db-host", metavar="HOST[:PORT]",
                   help="the database server as Airflow's workers reach it (default: the admin URL's host and port)")
    a.add_argument("--rotate-password", action="store_true", help="set a new password on an existing role")
    a.add_argument("--sftp-admin", metavar="CONN_OR_URL", default=os.environ.get(ENV_SFTP_ADMIN), help=SFTP_HELP)
    a.add_argument("--regions-dir", metavar="DIR", help=RDIR_HELP)
    a.add_argument("--dags-dir", metavar="DIR", help="the DAG folder (default: the project's dags/)")
    a.add_argument("--create-connections", action="store_true",
                   help="import the complete connections missing into Airflow (from a 0600 file: no password on a "
                        "command line; others are printed), and create the region's pools")
    a.set_defaults(func=cmd_region_add)


def add_establishment(sub) -> None:
    e = sub.add_parser("establishment", help="add an establishment to a region")
    esub = e.add_subparsers(dest="establishment_command", required=True, metavar="ACTION")
    ea = esub.add_parser(
        "add", help="declare an establishment in its region file and create its SFTP tree (idempotent)",
        description="Add an establishment to a region file (checked before writing) and create its SFTP directories. "
                    "Same data again: nothing changes (exit 0); other data for the same FINESS: refused unless "
                    "--update. Exit 2 refused, 1 a server failed.")
    ea.add_argument("--region", required=True, help="region code")
    ea.add_argument("--finess", required=True, help="FINESS of the site (ET), 9 characters with its Luhn key")
    ea.add_argument("--name", required=True)
    ea.add_argument("--finess-ej", metavar="FINESS", help="FINESS of the legal entity (EJ)")
    ea.add_argument("--status", choices=STATUSES,
                    help="default: shadow when the region has old_concentrator: true, else active")
    ea.add_argument("--contact", metavar="EMAIL", help="technical contact's e-mail")
    ea.add_argument("--update", action="store_true", help="change an establishment already declared")
    ea.add_argument("--sftp-admin", metavar="CONN_OR_URL", default=os.environ.get(ENV_SFTP_ADMIN), help=SFTP_HELP)
    ea.add_argument("--regions-dir", metavar="DIR", help=RDIR_HELP)
    ea.set_defaults(func=cmd_establishment_add)


def _load_existing(path: Path):
    """(ruamel YAML, document, text) of an existing region file, after checking it is valid."""
    text = path.read_text(encoding="utf-8")
    y = _yaml(text)
    try:
        doc = y.load(text)
        parse_region(_plain(doc), path)
    except ConfigError as exc:
        raise ProvisionError(f"refused, nothing was changed: the existing region file is invalid, fix it first:\n  "
                             f"{exc}") from exc
    except Exception as exc:  # noqa: BLE001 - ruamel's YAMLError
        raise ProvisionError(f"refused, nothing was changed: {path}: not valid YAML: {exc}") from exc
    return y, doc, text


def _validated(doc, path: Path) -> Region:
    try:
        return parse_region(_plain(doc), path)
    except ConfigError as exc:
        hint = ("\n  (`rpu region add` sets them: --ars-email EMAIL, or --ars-none)" if "alerts.ars:" in str(exc)
                else "")
        raise ProvisionError(f"refused, nothing was changed:\n  {exc}{hint}") from exc


def _db_host(args, admin_url: str | None) -> str | None:
    if args.db_host:
        return args.db_host if ":" in args.db_host else f"{args.db_host}:5432"
    if not admin_url:
        return None
    p = _conn_params(admin_url)
    host = p.get("host") or "localhost"
    if host.startswith("/"):
        return None         # a Unix socket directory means nothing to Airflow's workers: --db-host
    return f"{host}:{p.get('port') or 5432}"


@dataclass
class _Run:
    """What a `region add` run did so far: printed even when a later step fails (the password above all)."""
    out: list[str] = field(default_factory=list)
    password: str | None = None
    password_shown: bool = False


def cmd_region_add(args) -> int:
    run = _Run()
    try:
        return _region_add(args, run)
    except ProvisionError as exc:
        print(f"rpu region add: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        if run.out:
            print("\n".join(run.out), flush=True)
        print(f"rpu region add: {exc}", file=sys.stderr)
        return 1
    finally:
        if run.password and not run.password_shown:   # set before a failure: not lost (shown once, here)
            print(f"password of role rpu_{args.code} (set before the failure; shown once, stored nowhere): "
                  f"{run.password}", flush=True)


def _region_add(args, run: _Run) -> int:
    out = run.out
    code, name, tz = args.code, args.name.strip(), args.timezone
    rdir = Path(args.regions_dir or regions_dir())
    ddir = Path(args.dags_dir or PROJECT_DIR / "dags")
    problems = []
    if not CODE_RE.match(code):
        problems.append(f"code {code!r}: lower-case letters, digits and '_', starting with a letter, 2–31 characters")
    if not name:
        problems.append("--name is empty")
    p = timezone_problem(tz)
    if p:
        problems.append(p)
    rows: list[tuple[int, dict]] = []
    if args.establishments:
        try:
            rows = read_establishments_csv(Path(args.establishments))
        except ProvisionError as exc:
            problems += str(exc).split("\n  ")[1:]
    problems += [f"--{opt.replace('_', '-')} {a!r} is not an e-mail address"
                 for opt in ("ars_email", "ops_email") for a in getattr(args, opt) or [] if not EMAIL_RE.match(a)]
    admin_url = args.admin_db
    if admin_url:
        p = check_admin_url(admin_url)
        if p:
            problems.append(p)
    sftp_admin = _sftp_admin_arg(args.sftp_admin, problems)
    path = rdir / f"{code}.yaml"
    if CODE_RE.match(code) and path.exists():
        y, doc, before = _load_existing(path)
        diffs = []
        if str(doc.get("name")) != name:
            diffs.append(f"name {doc.get('name')!r}")
        if str(doc.get("timezone")) != tz:
            diffs.append(f"time zone {doc.get('timezone')!r}")
        if args.old_concentrator and not doc.get("old_concentrator"):
            diffs.append("no old_concentrator")
        if diffs:
            problems.insert(0, f"duplicate code: region {code!r} already exists in {path} with {', '.join(diffs)}: "
                               "choose another code (or give exactly the same --name and --timezone to complete "
                               "its provisioning)")
    fail(problems)
    if not path.exists():
        y, doc, before = _yaml(), new_region_doc(code, name, tz, args.old_concentrator), None
    old = bool(doc.get("old_concentrator"))
    alerts_changed = merge_alerts(doc, args.ars_email or [], args.ops_email or [], args.ars_none)
    added, _ = merge_establishments(doc, [(f"{args.establishments}:{line}", given) for line, given in rows],
                                    update=False, default_status="shadow" if old else "active",
                                    hint="change it with `rpu establishment add --update`, or edit the region file")
    region = _validated(doc, path)
    text = _dump(y, doc) if (before is None or added or alerts_changed) else before
    stub = dagset.stub_text(code)
    warnings = _other_regions_declaring(rdir, code, {g["finess"] for _, g in rows})

    # servers: reached (and checked) before anything changes
    plan = db_preflight(admin_url, f"rpu_{code}") if admin_url else None
    with (open_sftp_admin(sftp_admin) if sftp_admin else _nothing()) as session:
        out.append(f"region {code} — {name} ({tz})"
                   + (" — transition: new establishments start in shadow" if old else ""))
        password = None
        if plan:
            password = run.password = new_password() if (not plan.role_exists or args.rotate_password) else None
            db = provision_database(admin_url, code, rotate=args.rotate_password, password=password)
            out.append(f"  database   {db.database} on {_where(admin_url)}: "
                       f"{'created' if db.db_created else 'exists'}; "
                       f"role {db.role}: {'created' if db.role_created else 'exists'}"
                       f"{', password rotated' if db.password_set and not db.role_created else ''}"
                       f"{', fixed ' + ' '.join(db.attributes_fixed) if db.attributes_fixed else ''}; "
                       f"schema: {'applied ' + ', '.join(db.migrations) if db.migrations else 'up to date'}; "
                       "grants: CONNECT+TEMPORARY, USAGE on public, DML on tables, USAGE on sequences")
            warnings += [f"warning: {w}" for w in db.warnings]
        else:
            out.append("  database   skipped (no --admin-db)")
        if session:
            created, there = create_tree(session, region, [e.finess for e in region.establishments])
            out.append(f"  SFTP       {len(region.establishments)} establishment(s) × {len(KINDS)} directories on "
                       f"{sftp_admin.display}: {created} created, {there} already there")
        else:
            out.append("  SFTP       skipped (no --sftp-admin)")
        if before is None or text != before:
            write_atomic(path, text)
            out.append(f"  region     {path}: {'written' if before is None else 'updated'} "
                       f"({len(region.establishments)} establishment(s)"
                       f"{', added ' + ' '.join(added) if before else ''})")
        else:
            out.append(f"  region     {path}: unchanged ({len(region.establishments)} establishment(s))")
        stub_path = ddir / dagset.dag_file_name(code)
        if stub_path.exists() and stub_path.read_text(encoding="utf-8") == stub:
            out.append(f"  DAG file   {stub_path}: unchanged")
        else:
            state = "rewritten (it differed from the stub)" if stub_path.exists() else "written"
            write_atomic(stub_path, stub)
            out.append(f"  DAG file   {stub_path}: {state}")

        specs = connection_specs(region, db_host=_db_host(args, admin_url), password=password, sftp=session,
                                 rotated=bool(plan and plan.role_exists and password))
    out.append("")
    if args.create_connections:
        out.append("Airflow connections:")
        lines, rest = create_connections(specs, password)
        out += [f"  {line}" for line in lines]
        wanted = pools.desired_pools(_valid_regions(rdir))
        import_pools(wanted)
        out.append(f"  pools: {', '.join(sorted(wanted))} (created or resized; `rpu pools sync` does the same)")
        if password:
            out.append(f"  password of role rpu_{code} (shown once, stored nowhere else): {password}")
        if rest:
            out.append("To complete (placeholders <…>) and create:")
    else:
        out.append("Airflow connections to create (or rerun with --create-connections):")
        rest = specs
    for s in rest:
        out.append(f"  {s.command()}" + (f"    # {s.note}" if s.note else ""))
    if password and not args.create_connections:
        out.append(f"  password of role rpu_{code} (shown once, stored nowhere else): {password}")
        out.append("  (put it in place of <password> in the Airflow UI, Admin → Connections, or rerun with "
                   "--create-connections, which imports the connection from a file only you can read: typed on a "
                   "command line, a password stays in the shell's history and shows in `ps`)")
    out.append("")
    out.append("Next: create the intake accounts (one per establishment, chrooted to its directory; the "
               "concentrator's, seeing the whole tree), then `rpu roles sync` (role ARS_" + code + ", who may trigger "
               "its reprise; pools): its DAGs parse without it, but only Admin may trigger them until it has run.")
    print("\n".join(out + warnings), flush=True)
    run.password_shown = True
    return 0


def _valid_regions(rdir: Path) -> list[Region]:
    """The valid region files of the directory (an invalid one is another region's business here)."""
    found = []
    for path in region_files(rdir):
        try:
            found.append(load_region(path))
        except ConfigError:
            pass
    return found


@contextmanager
def _nothing():
    yield None


def cmd_establishment_add(args) -> int:
    try:
        return _establishment_add(args)
    except ProvisionError as exc:
        print(f"rpu establishment add: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"rpu establishment add: {exc}", file=sys.stderr)
        return 1


def _establishment_add(args) -> int:
    rdir = Path(args.regions_dir or regions_dir())
    fields = (("finess", args.finess), ("name", args.name), ("finess_ej", args.finess_ej), ("status", args.status),
              ("contact", args.contact))
    given = {k: v.strip() for k, v in fields if v is not None and v.strip()}
    problems = establishment_problems(given)
    path = rdir / f"{args.region}.yaml"
    if not CODE_RE.match(args.region):
        problems.append(f"region {args.region!r} is not a region code")
    elif not path.exists():
        known = ", ".join(p.stem for p in sorted(rdir.glob("*.yaml"))) or "none"
        problems.append(f"unknown region {args.region!r} (no {path}); known regions: {known}")
    sftp_admin = _sftp_admin_arg(args.sftp_admin, problems)
    fail(problems)

    y, doc, before = _load_existing(path)
    old = bool(doc.get("old_concentrator"))
    added, updated = merge_establishments(doc, [("--finess", given)], update=args.update,
                                          default_status="shadow" if old else "active")
    region = _validated(doc, path)
    text = _dump(y, doc) if (added or updated) else before
    warnings = _other_regions_declaring(rdir, region.code, {given["finess"]})
    etab = region.establishment(given["finess"])

    with (open_sftp_admin(sftp_admin) if sftp_admin else _nothing()) as session:
        out = [f"establishment {etab.finess} — {etab.name} — region {region.code}: status {etab.status}"
               + (" (the region has an older concentrator: switch it to active once it has 7 days of correct files)"
                  if etab.status == "shadow" else "")]
        if session:
            created, there = create_tree(session, region, [etab.finess])
            out.append(f"  SFTP       {len(KINDS)} directories on {sftp_admin.display}: {created} created, "
                       f"{there} already there")
        else:
            out.append("  SFTP       skipped (no --sftp-admin)")
        if text != before:
            write_atomic(path, text)
            out.append(f"  region     {path}: {'added' if added else 'updated'}")
        else:
            out.append(f"  region     {path}: unchanged (already declared with these data)")
    home = region.remote_dir("inbox", etab.finess).rsplit("/", 1)[0]
    out.append(f"Next: create its SFTP account, chrooted to its directory {home}"
               f", then `rpu roles sync` (role Lecteur_{etab.finess}). The region's DAGs take it at their next parse.")
    print("\n".join(out + warnings), flush=True)
    return 0
