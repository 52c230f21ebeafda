"""`rpu roles sync [--dry-run]` and `rpu pools sync [--dry-run]`: the Airflow roles (rpu.roles) and pools
(rpu.pools) derived from the region files. `roles sync` syncs the pools too."""
from __future__ import annotations

import sys

from rpu import pools, roles
from rpu.config import load_regions


def add_roles(sub) -> None:
    r = sub.add_parser("roles", help="Airflow roles of the dashboard and the region DAGs (FAB auth manager)",
                       description=roles.__doc__.split("\n\n")[0])
    rsub = r.add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    s = rsub.add_parser("sync", help="create/update the roles ATIH, ARS_<region>, Lecteur_<FINESS> from the "
                                     "region files",
                        description="Create the missing roles ATIH, ARS_<code> (one per region file) and "
                                    "Lecteur_<FINESS> (one per establishment) and set their permissions (who "
                                    "triggers the reprise and release DAGs included); then the pools, as "
                                    "`rpu pools sync`. A new region's DAGs parse before it, but nobody but Admin "
                                    "may trigger them until it has run.")
    s.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    s.set_defaults(func=cmd_sync)


def add_pools(sub) -> None:
    p = sub.add_parser("pools", help="Airflow pools of the region DAGs (database, quality gate, SFTP servers)",
                       description=pools.__doc__.split("\n\n")[0])
    psub = p.add_subparsers(dest="pools_command", required=True, metavar="ACTION")
    s = psub.add_parser("sync", help="create the missing pools and set their slots from the region files",
                        description="Create the pools rpu_db_<code> (one per region), rpu_gx_gate and "
                                    "rpu_sftp_<invs|ars|atih> in Airflow's metadata database and set their slots "
                                    "(region files, `pools:`). Other pools are left alone.")
    s.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    s.set_defaults(func=cmd_pools_sync)


def cmd_pools_sync(args) -> int:
    regions = load_regions()
    _pools(regions, args.dry_run)
    return 0


def _pools(regions, dry_run: bool) -> None:
    counts = pools.sync(regions, dry_run=dry_run)
    verb = "would change" if dry_run else "changed"
    print(f"pools: {counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged ({verb})")


def cmd_sync(args) -> int:
    from airflow.configuration import conf

    manager = conf.get("core", "auth_manager", fallback="")
    if "FabAuthManager" not in manager:
        print(f"rpu roles: Airflow's auth manager is {manager or '(default)'}, not the FAB auth manager: set "
              "AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager "
              "(roles exist only there)", file=sys.stderr)
        return 2
    regions = load_regions()
    counts = roles.sync(regions, dry_run=args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    print(f"{len(regions)} region(s): {counts['roles_created']} role(s) created, {counts['permissions_added']} "
          f"permission(s) added, {counts['permissions_removed']} removed ({verb}); "
          f"{counts['unknown_roles']} role(s) of unknown regions/establishments left as is")
    _pools(regions, args.dry_run)
    return 0
