"""`rpu roles sync [--dry-run]`: the Airflow roles derived from the region files (rpu.roles)."""
from __future__ import annotations

import sys

from rpu import roles
from rpu.config import load_regions


def add_roles(sub) -> None:
    r = sub.add_parser("roles", help="Airflow roles of the dashboard and the region DAGs (FAB auth manager)",
                       description=roles.__doc__.split("\n\n")[0])
    rsub = r.add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    s = rsub.add_parser("sync", help="create/update the roles ATIH, ARS_<region>, Lecteur_<FINESS> from the "
                                     "region files",
                        description="Create the missing roles ATIH, ARS_<code> (one per region file) and "
                                    "Lecteur_<FINESS> (one per establishment) and set their permissions. "
                                    "Run it before the dag-processor parses a new region's DAGs.")
    s.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    s.set_defaults(func=cmd_sync)


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
    return 0
