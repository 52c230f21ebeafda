"""A new region against a real Airflow metadata database with the FAB auth manager (SQLite, throw-away
AIRFLOW_HOME, each step a separate process as operations run it): its DAGs are parsed and stored before any
of its roles exist (no import error), then `rpu roles sync` grants who may trigger what and `rpu pools sync`
creates the pools its tasks take."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rpu import dagset
from rpu.config import finess_with_key
from support.regions import dag_folder, region_add

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


class Home:
    """An AIRFLOW_HOME of its own (FAB auth manager, SQLite) over a DAG folder and a regions directory."""

    def __init__(self, base: Path, dags: Path, regions: Path):
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RPU_"))}
        (base / "airflow").mkdir()
        self.env = inherited | {
            "AIRFLOW_HOME": str(base / "airflow"), "AIRFLOW__CORE__AUTH_MANAGER": FAB,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "RPU_REGIONS_DIR": str(regions), "RPU_DATA_DIR": str(base / "data")}

    def run(self, *argv: str) -> str:
        r = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL, check=False)
        assert r.returncode == 0, f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    def python(self, code: str):
        """Run `code` in the home's environment; it prints one JSON value, returned."""
        out = self.run(sys.executable, "-c", code)
        return json.loads(out.strip().splitlines()[-1])

    def rpu(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "rpu.cli", *args)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    base = tmp_path_factory.mktemp("roles-pools")
    dags, regions = dag_folder(base / "dags", shipped_regions=False), base / "regions"
    region_add(regions, dags, "nvl", "Nouvelle région", "Europe/Paris",
               [(finess_with_key(f"9610{i:04d}"), f"Urgences {i}") for i in range(2)])
    h = Home(base, dags, regions)
    h.run(AIRFLOW, "db", "migrate")
    return h


ROLES = """
import json
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as ab:
    print(json.dumps({r.name: sorted(f"{p.action.name} on {p.resource.name}" for p in r.permissions)
                      for r in ab.sm.get_all_roles()}))
"""
STORED = """
import json
from sqlalchemy import select
from airflow.models.errors import ParseImportError
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils.session import create_session
with create_session() as s:
    print(json.dumps({"errors": {e.filename: e.stacktrace for e in s.scalars(select(ParseImportError))},
                      "dags": sorted(s.scalars(select(SerializedDagModel.dag_id)))}))
"""
POOLS = """
import json
from airflow.models.pool import Pool
print(json.dumps({p.pool: p.slots for p in Pool.get_pools()}))
"""


def test_a_new_regions_dags_are_stored_before_its_roles_exist(home):
    roles = home.python(ROLES)
    assert not any(r.startswith(("ARS_", "Lecteur_")) or r == "ATIH" for r in roles), sorted(roles)
    home.run(AIRFLOW, "dags", "reserialize")        # what the dag-processor does: parse, store, sync DAG perms
    stored = home.python(STORED)
    assert stored["errors"] == {}
    assert set(dagset.dag_ids("nvl")) <= set(stored["dags"])


def test_roles_sync_grants_the_reprise_to_the_ars_and_the_release_to_atih(home):
    out = home.rpu("roles", "sync")
    assert "role ARS_nvl: created" in out and "role ATIH: created" in out, out
    roles = home.python(ROLES)
    ars, atih = set(roles["ARS_nvl"]), set(roles["ATIH"])
    trigger = {"can_edit on DAG:{}", "can_create on DAG Run:{}"}
    assert {t.format("nvl_reprise") for t in trigger} <= ars
    assert not {t.format("nvl_release") for t in trigger} & ars
    assert {t.format("nvl_release") for t in trigger} <= atih
    assert not {t.format("nvl_reprise") for t in trigger} & atih
    # parsing again (the DAGs declare no access_control) takes nothing away; a second sync changes nothing
    home.run(AIRFLOW, "dags", "reserialize")
    assert home.python(ROLES)["ARS_nvl"] == roles["ARS_nvl"]
    assert "0 role(s) created, 0 permission(s) added, 0 removed" in home.rpu("roles", "sync")


def test_pools_sync_creates_the_pools_in_the_metadata_database(home, tmp_path):
    out = home.rpu("pools", "sync")     # after `roles sync` (which syncs them too): nothing left to do
    assert "0 created, 0 updated" in out, out
    pools = home.python(POOLS)
    assert {k: v for k, v in pools.items() if k.startswith("rpu_")} == {
        "rpu_db_nvl": 4, "rpu_gx_gate": 2, "rpu_sftp_invs": 4, "rpu_sftp_atih": 4, "rpu_sftp_ars": 4}
    # a size changed in the region file: updated, and told
    path = Path(home.env["RPU_REGIONS_DIR"]) / "nvl.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "pools: {db: 7, sftp: 2}\n", encoding="utf-8")
    assert "would change" in home.rpu("pools", "sync", "--dry-run")
    assert home.python(POOLS)["rpu_db_nvl"] == 4
    out = home.rpu("pools", "sync")
    assert "pool rpu_db_nvl: updated (7 slot(s)), was 4" in out and "2 created" not in out, out
    pools = home.python(POOLS)
    assert pools["rpu_db_nvl"] == 7 and pools["rpu_sftp_invs"] == 2 and pools["default_pool"] == 128
