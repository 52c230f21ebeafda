"""rpu.dagset is the domain's list of a region's DAGs (read by `rpu roles sync` and `rpu region add` without
building any DAG): it must be exactly what dags/rpu_dags builds."""
from __future__ import annotations

from pathlib import Path

from rpu import dagset, roles
from rpu.config import load_regions

PROJECT = Path(__file__).resolve().parents[2]
REGIONS = load_regions(PROJECT / "config" / "regions")


def test_the_dags_built_for_a_region_are_the_ones_rpu_dagset_lists(shipped_dagbag):
    for region in REGIONS:
        built = {d: shipped_dagbag.get_dag(d) for d in shipped_dagbag.dag_ids if d.startswith(f"{region.code}_")}
        assert sorted(built) == sorted(dagset.dag_ids(region.code))
        assert not any(dag.access_control for dag in built.values())    # roles are `rpu roles sync`'s (no import
        for kind in dagset.KINDS:                                        # error before the roles exist)
            dag = built[dagset.dag_id(region.code, kind)]
            assert sorted(dag.tags) == sorted(dagset.tags(region.code, kind))
            assert {t.task_id: t.pool for t in dag.tasks if t.pool != "default_pool"} == \
                dagset.task_pools(region.code, kind)


def test_roles_read_the_dag_ids_from_the_domain_not_from_dags():
    region = REGIONS[0]
    dags = roles.region_dags(region)
    assert dags.dag_ids == dagset.dag_ids(region.code)
    assert dags.triggered == {f"{region.code}_reprise": f"ARS_{region.code}", f"{region.code}_release": "ATIH"}


def test_a_dag_file_names_its_region():
    assert dagset.region_code("/opt/airflow/dags/region_ara.py") == "ara"
    assert dagset.dag_file_name("ara") == "region_ara.py"
    assert "build_region(__file__, globals())" in dagset.stub_text("ara")
    assert "'ara'" in dagset.stub_text("ara") and "config/regions/ara.yaml" in dagset.stub_text("ara")
