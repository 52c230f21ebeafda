"""`rpu roles sync`: the Airflow roles (FAB auth manager) of the concentrator, derived from the region files.

| role               | who                                   | dashboard (plugin /rpu)          | Airflow UI                          |
|--------------------|---------------------------------------|----------------------------------|-------------------------------------|
| `Admin` (FAB)      | administrators                        | every region                     | everything                          |
| `ATIH`             | national operations (ATIH)            | every region                     | read-only, every DAG                |
| `ARS_<code>`       | the ARS of region `<code>`            | region `<code>`                  | read its region's DAGs; trigger its `<code>_reprise` |
| `Lecteur_<FINESS>` | a reader of one establishment (ET)    | that establishment only          | nothing but its profile             |

The sync creates the missing roles and makes each managed role's permissions exactly the ones listed here
(permissions added by hand to these roles are removed: they are owned by this code). The permissions on a DAG
that declares `access_control` (the reprise DAG: `ARS_<code>` may read and trigger it) are left to Airflow,
which applies the DAG's `access_control` when it parses the DAG — hence: run `rpu roles sync` **before** the
dag-processor parses a new region's DAGs (a DAG naming a role that does not exist fails to import).
Roles of regions or establishments no longer in the region files are reported, never deleted (users may
still hold them). Users are created with Airflow's own command: `airflow users create ... --role ARS_demo`.

Needs Airflow configured with `AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.
FabAuthManager` and a migrated metadata database (`airflow db migrate`).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

from rpu.config import PROJECT_DIR, Region, load_regions

ADMIN_ROLE = "Admin"          # FAB's built-in administrator role
ATIH_ROLE = "ATIH"
ARS_PREFIX = "ARS_"
LECTEUR_PREFIX = "Lecteur_"

# FAB actions and resources (names as stored by FAB; see airflow.providers.fab.www.security.permissions)
READ, EDIT, CREATE, MENU = "can_read", "can_edit", "can_create", "menu_access"
DAG_PREFIX, DAG_RUN_PREFIX = "DAG:", "DAG Run:"

# Everyone we create may log in, see and change their own profile and password, and see the navigation entry
# of the dashboard (the UI builds its menu from /api/v2/plugins, which needs "can_read on Plugins").
PERSONAL = frozenset({
    (READ, "Website"), (READ, "My Profile"), (EDIT, "My Profile"), (READ, "My Password"), (EDIT, "My Password"),
    (READ, "Plugins"),
})
# An ARS user works with the DAGs of its region only: the global "DAG Runs"/"Task Instances"/... permissions
# below apply only to DAGs the role may read (FAB checks the DAG too), and it may read no DAG globally.
ARS_BASE = PERSONAL | {
    (MENU, "Browse"), (MENU, "DAGs"), (MENU, "DAG Runs"), (MENU, "Task Instances"),
    (READ, "DAG Runs"), (READ, "Task Instances"), (READ, "Task Logs"), (READ, "DAG Code"),
    (READ, "DAG Versions"), (READ, "DAG Warnings"), (READ, "XComs"),
}


def ars_role(code: str) -> str:
    return f"{ARS_PREFIX}{code}"


def lecteur_role(finess: str) -> str:
    return f"{LECTEUR_PREFIX}{finess}"


@dataclass
class RegionDags:
    """The DAG ids of a region, and those whose permissions their own `access_control` manages."""
    dag_ids: list[str] = field(default_factory=list)
    self_managed: list[str] = field(default_factory=list)


def region_dags(region: Region) -> RegionDags:
    """Build the region's DAGs with the project's factories (dags/rpu_dags, as dags/rpu_regions.py does)."""
    dags_dir = str(PROJECT_DIR / "dags")
    if dags_dir not in sys.path:
        sys.path.insert(0, dags_dir)
    import rpu_dags

    out = RegionDags()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # access_control's deprecation notice, once per DAG
        for info in sorted(pkgutil.iter_modules(rpu_dags.__path__), key=lambda m: m.name):
            for build in getattr(importlib.import_module(f"rpu_dags.{info.name}"), "BUILDERS", ()):
                dag = build(region)
                out.dag_ids.append(dag.dag_id)
                if dag.access_control:
                    out.self_managed.append(dag.dag_id)
    return out


def desired_roles(regions: Iterable[Region], viewer_permissions: Iterable[tuple[str, str]],
                  dags_of=region_dags) -> tuple[dict[str, set[tuple[str, str]]], set[str]]:
    """(role → exact permissions, resources left to DAGs' access_control) for every region."""
    roles: dict[str, set[tuple[str, str]]] = {ATIH_ROLE: set(viewer_permissions) | PERSONAL}
    self_managed: set[str] = set()
    for region in regions:
        dags = dags_of(region)
        for dag_id in dags.self_managed:
            self_managed |= {DAG_PREFIX + dag_id, DAG_RUN_PREFIX + dag_id}
        roles[ars_role(region.code)] = set(ARS_BASE) | {
            (READ, DAG_PREFIX + d) for d in dags.dag_ids if d not in dags.self_managed}
        for e in region.establishments:
            roles[lecteur_role(e.finess)] = set(PERSONAL)
    return roles, self_managed


def _is_ours(name: str) -> bool:
    return name == ATIH_ROLE or name.startswith((ARS_PREFIX, LECTEUR_PREFIX))


def sync(regions: list[Region], *, dry_run: bool = False, out=print) -> dict:
    """Create/update the roles in Airflow's FAB tables; returns counts of what changed (or would)."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    counts = {"roles_created": 0, "permissions_added": 0, "permissions_removed": 0, "unknown_roles": 0}
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        wanted, self_managed = desired_roles(regions, sm.VIEWER_PERMISSIONS)
        for name in sorted(wanted):
            role = sm.find_role(name)
            if role is None:
                counts["roles_created"] += 1
                out(f"role {name}: created")
                if dry_run:
                    counts["permissions_added"] += len(wanted[name])
                    continue
                role = sm.add_role(name)
            have = {(p.action.name, p.resource.name): p for p in role.permissions}
            for action, resource in sorted(set(wanted[name]) - set(have)):
                counts["permissions_added"] += 1
                out(f"role {name}: + {action} on {resource}")
                if not dry_run:
                    perm = sm.get_permission(action, resource) or sm.create_permission(action, resource)
                    sm.add_permission_to_role(role, perm)
            for key in sorted(set(have) - set(wanted[name])):
                if key[1] in self_managed:
                    continue            # the DAG's access_control owns it
                counts["permissions_removed"] += 1
                out(f"role {name}: - {key[0]} on {key[1]}")
                if not dry_run:
                    sm.remove_permission_from_role(role, have[key])
        for role in sm.get_all_roles():
            if _is_ours(role.name) and role.name not in wanted:
                counts["unknown_roles"] += 1
                out(f"role {role.name}: no such region or establishment in the region files (left as is)")
    return counts


def cmd_sync(args) -> int:
    from airflow.configuration import conf

    manager = conf.get("core", "auth_manager", fallback="")
    if "FabAuthManager" not in manager:
        print(f"rpu roles: Airflow's auth manager is {manager or '(default)'}, not the FAB auth manager: set "
              "AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager "
              "(roles exist only there)", file=sys.stderr)
        return 2
    regions = load_regions()
    counts = sync(regions, dry_run=args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    print(f"{len(regions)} region(s): {counts['roles_created']} role(s) created, {counts['permissions_added']} "
          f"permission(s) added, {counts['permissions_removed']} removed ({verb}); "
          f"{counts['unknown_roles']} role(s) of unknown regions/establishments left as is")
    return 0


def register(subparsers) -> None:
    """`rpu roles sync [--dry-run]`."""
    r = subparsers.add_parser("roles", help="Airflow roles of the dashboard and the region DAGs (FAB auth manager)",
                              description=__doc__.split("\n\n")[0])
    rsub = r.add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    s = rsub.add_parser("sync", help="create/update the roles ATIH, ARS_<region>, Lecteur_<FINESS> from the "
                                     "region files",
                        description="Create the missing roles ATIH, ARS_<code> (one per region file) and "
                                    "Lecteur_<FINESS> (one per establishment) and set their permissions. "
                                    "Run it before the dag-processor parses a new region's DAGs.")
    s.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    s.set_defaults(func=cmd_sync)


def main(argv: list[str] | None = None) -> int:
    """`python -m rpu.roles sync` (the same as `rpu roles sync`)."""
    p = argparse.ArgumentParser(prog="python -m rpu.roles")
    register(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = p.parse_args(["roles", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
