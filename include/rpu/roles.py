"""`rpu roles sync`: the Airflow roles (FAB auth manager) of the concentrator, derived from the region files.

| role               | who                                   | dashboard (plugin /rpu)          | Airflow UI                          |
|--------------------|---------------------------------------|----------------------------------|-------------------------------------|
| `Admin` (FAB)      | administrators                        | every region                     | everything                          |
| `ATIH`             | national operations (ATIH)            | every region                     | read-only, every DAG; trigger every `<code>_release` |
| `ARS_<code>`       | the ARS of region `<code>`            | region `<code>`                  | read its region's DAGs; trigger its `<code>_reprise` |
| `Lecteur_<FINESS>` | a reader of one establishment (ET)    | that establishment only          | nothing but its profile             |

The sync creates the missing roles and makes each managed role's permissions exactly the ones listed here
(permissions added by hand to these roles are removed: they are owned by this code), the per-DAG trigger
permissions included (rpu.dagset.trigger_role: read and edit the DAG, read and create its runs). No DAG declares
`access_control` (FAB fails the import of a DAG naming a role that does not exist yet): a new region's DAGs
parse before the sync, and nobody but Admin may trigger its reprise or release until the sync has run.
The sync also creates the Airflow pools (rpu.pools).
Roles of regions or establishments no longer in the region files are reported, never deleted (users may
still hold them). Users are created with Airflow's own command: `airflow users create ... --role ARS_demo`.

Needs Airflow configured with `AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.
FabAuthManager` and a migrated metadata database (`airflow db migrate`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rpu import dagset
from rpu.config import Region
from rpu.dagset import ARS_PREFIX, ATIH_ROLE, ars_role

ADMIN_ROLE = "Admin"          # FAB's built-in administrator role
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


def lecteur_role(finess: str) -> str:
    return f"{LECTEUR_PREFIX}{finess}"


# What may trigger one DAG (FAB checks "can_edit" on the DAG and "can_create" on its runs to trigger it)
def trigger_permissions(dag_id: str) -> set[tuple[str, str]]:
    return {(READ, DAG_PREFIX + dag_id), (EDIT, DAG_PREFIX + dag_id),
            (READ, DAG_RUN_PREFIX + dag_id), (CREATE, DAG_RUN_PREFIX + dag_id)}


@dataclass
class RegionDags:
    """The DAG ids of a region, and the role that triggers each of those triggered by hand."""
    dag_ids: list[str] = field(default_factory=list)
    triggered: dict[str, str] = field(default_factory=dict)


def region_dags(region: Region) -> RegionDags:
    """The region's DAG ids as rpu.dagset lists them (the ones dags/rpu_dags builds; tests/dags checks they agree)."""
    return RegionDags(dagset.dag_ids(region.code), dagset.triggered_ids(region.code))


def desired_roles(regions: Iterable[Region], viewer_permissions: Iterable[tuple[str, str]],
                  dags_of=region_dags) -> dict[str, set[tuple[str, str]]]:
    """Role → its exact permissions, for every region."""
    roles: dict[str, set[tuple[str, str]]] = {ATIH_ROLE: set(viewer_permissions) | PERSONAL}
    triggers: list[tuple[str, str]] = []
    for region in regions:
        dags = dags_of(region)
        roles[ars_role(region.code)] = set(ARS_BASE) | {(READ, DAG_PREFIX + d) for d in dags.dag_ids}
        for e in region.establishments:
            roles[lecteur_role(e.finess)] = set(PERSONAL)
        triggers += [(role, dag_id) for dag_id, role in dags.triggered.items()]
    for role, dag_id in triggers:
        roles[role] |= trigger_permissions(dag_id)
    return roles


def _is_ours(name: str) -> bool:
    return name == ATIH_ROLE or name.startswith((ARS_PREFIX, LECTEUR_PREFIX))


def sync(regions: list[Region], *, dry_run: bool = False, out=print) -> dict:
    """Create/update the roles in Airflow's FAB tables; returns counts of what changed (or would)."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    counts = {"roles_created": 0, "permissions_added": 0, "permissions_removed": 0, "unknown_roles": 0}
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        wanted = desired_roles(regions, sm.VIEWER_PERMISSIONS)
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
                counts["permissions_removed"] += 1
                out(f"role {name}: - {key[0]} on {key[1]}")
                if not dry_run:
                    sm.remove_permission_from_role(role, have[key])
        for role in sm.get_all_roles():
            if _is_ours(role.name) and role.name not in wanted:
                counts["unknown_roles"] += 1
                out(f"role {role.name}: no such region or establishment in the region files (left as is)")
    return counts
