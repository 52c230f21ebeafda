"""rpu.roles: the roles and exact permissions derived from the region files, with the DAG ids rpu.dagset lists
(a stand-in DAG list: tests/test_dashboard.py). `roles.sync` itself writes Airflow's FAB tables and is not run
here."""
from __future__ import annotations

import dataclasses

from rpu import dagset, roles
from rpu.config import get_region


def _other_region():
    demo = get_region("demo")
    site = dataclasses.replace(demo.establishments[0], finess="990009991")
    return dataclasses.replace(demo, code="autre", name="Autre", establishments=(site,))


def test_region_dags_are_the_dagset_ones_with_who_triggers_them():
    dags = roles.region_dags(get_region("demo"))
    assert dags.dag_ids == dagset.dag_ids("demo") and {"demo_reprise", "demo_release"} <= set(dags.dag_ids)
    assert dags.triggered == {"demo_reprise": "ARS_demo", "demo_release": "ATIH"}


def _dag_perms(perms, dag_id):
    return {(a, r) for a, r in perms if r in (f"DAG:{dag_id}", f"DAG Run:{dag_id}")}


def test_an_ars_reads_its_regions_dags_only_and_triggers_its_reprise_not_the_release():
    wanted = roles.desired_roles([get_region("demo"), _other_region()], [])
    dag_reads = {name: {r for a, r in perms if r.startswith(roles.DAG_PREFIX) and a == roles.READ}
                 for name, perms in wanted.items()}
    assert dag_reads["ARS_demo"] == {f"DAG:{d}" for d in dagset.dag_ids("demo")}
    assert dag_reads["ARS_autre"] == {f"DAG:{d}" for d in dagset.dag_ids("autre")}
    trigger = {(roles.EDIT, "DAG:demo_reprise"), (roles.CREATE, "DAG Run:demo_reprise")}
    assert trigger <= wanted["ARS_demo"] and not trigger & wanted["ARS_autre"]
    for ars in ("ARS_demo", "ARS_autre"):   # may never trigger a release (nor any other DAG)
        assert {(a, r) for a, r in wanted[ars] if a in (roles.EDIT, roles.CREATE) and r.startswith("DAG")} == \
            roles.trigger_permissions(f"{ars[4:]}_reprise") - {(roles.READ, f"DAG:{ars[4:]}_reprise"),
                                                               (roles.READ, f"DAG Run:{ars[4:]}_reprise")}
    assert all(roles.ARS_BASE <= wanted[r] for r in ("ARS_demo", "ARS_autre"))
    assert all((roles.READ, "DAGs") not in wanted[r] for r in ("ARS_demo", "ARS_autre"))


def test_atih_triggers_every_release_and_nothing_else():
    wanted = roles.desired_roles([get_region("demo"), _other_region()], [(roles.READ, "DAGs")])
    writes = {(a, r) for a, r in wanted["ATIH"] if a in (roles.EDIT, roles.CREATE) and r.startswith("DAG")}
    assert writes == {(roles.EDIT, "DAG:demo_release"), (roles.CREATE, "DAG Run:demo_release"),
                      (roles.EDIT, "DAG:autre_release"), (roles.CREATE, "DAG Run:autre_release")}
    assert _dag_perms(wanted["ATIH"], "demo_release") == roles.trigger_permissions("demo_release")


def test_atih_gets_the_viewer_permissions_and_readers_only_their_profile():
    viewer = [(roles.READ, "DAGs"), (roles.READ, "Task Logs")]
    demo = get_region("demo")
    wanted = roles.desired_roles([demo, _other_region()], viewer)
    releases = roles.trigger_permissions("demo_release") | roles.trigger_permissions("autre_release")
    assert wanted[roles.ATIH_ROLE] == set(viewer) | roles.PERSONAL | releases
    readers = {r for r in wanted if r.startswith(roles.LECTEUR_PREFIX)}
    assert readers == {roles.lecteur_role(e.finess) for e in demo.establishments} | {"Lecteur_990009991"}
    assert all(wanted[r] == roles.PERSONAL for r in readers)


def test_only_our_roles_are_ours():
    assert [roles._is_ours(n) for n in ("ATIH", "ARS_demo", "Lecteur_990000127", "Admin", "Viewer", "Op")] == \
        [True, True, True, False, False, False]
    assert roles.lecteur_role("990000127") == "Lecteur_990000127"

