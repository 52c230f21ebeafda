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


def test_region_dags_are_the_dagset_ones_and_the_reprise_manages_itself():
    dags = roles.region_dags(get_region("demo"))
    assert dags.dag_ids == dagset.dag_ids("demo") and "demo_reprise" in dags.dag_ids
    assert dags.self_managed == ["demo_reprise"]


def test_an_ars_reads_its_regions_dags_only_and_never_the_reprise_by_role():
    wanted, self_managed = roles.desired_roles([get_region("demo"), _other_region()], [])
    dag_reads = {name: {r for a, r in perms if r.startswith(roles.DAG_PREFIX)} for name, perms in wanted.items()}
    assert dag_reads["ARS_demo"] == {f"DAG:{d}" for d in dagset.dag_ids("demo") if d != "demo_reprise"}
    assert dag_reads["ARS_autre"] == {f"DAG:{d}" for d in dagset.dag_ids("autre") if d != "autre_reprise"}
    assert self_managed == {"DAG:demo_reprise", "DAG Run:demo_reprise", "DAG:autre_reprise", "DAG Run:autre_reprise"}
    assert all(roles.ARS_BASE <= wanted[r] for r in ("ARS_demo", "ARS_autre"))
    assert all((roles.READ, "DAGs") not in wanted[r] for r in ("ARS_demo", "ARS_autre"))


def test_atih_gets_the_viewer_permissions_and_readers_only_their_profile():
    viewer = [(roles.READ, "DAGs"), (roles.READ, "Task Logs")]
    demo = get_region("demo")
    wanted, _ = roles.desired_roles([demo, _other_region()], viewer)
    assert wanted[roles.ATIH_ROLE] == set(viewer) | roles.PERSONAL
    readers = {r for r in wanted if r.startswith(roles.LECTEUR_PREFIX)}
    assert readers == {roles.lecteur_role(e.finess) for e in demo.establishments} | {"Lecteur_990009991"}
    assert all(wanted[r] == roles.PERSONAL for r in readers)


def test_only_our_roles_are_ours():
    assert [roles._is_ours(n) for n in ("ATIH", "ARS_demo", "Lecteur_990000127", "Admin", "Viewer", "Op")] == \
        [True, True, True, False, False, False]
    assert roles.lecteur_role("990000127") == "Lecteur_990000127"

