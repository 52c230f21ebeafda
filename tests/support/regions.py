"""Region files for the tests, and the DAG folders that go with them.

- `write_region`: a copy of a shipped region file with test-friendly settings (the `dag.test()` runs);
- `region_add`: a region provisioned by `rpu region add`, files only (region file and DAG file);
- `dag_set`: the DAG set the policy tests walk — the shipped regions plus the 18 regions of France, one DagBag.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from rpu.cli import main
from rpu.config import Region, finess_with_key, load_regions
from rpu.national import settings

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED_REGIONS = PROJECT / "config" / "regions"


def write_region(directory: Path, base: str = "demo", **overrides) -> Path:
    """A copy of a shipped region file with test-friendly settings (no waiting, immediate retries)."""
    data = yaml.safe_load((SHIPPED_REGIONS / f"{base}.yaml").read_text(encoding="utf-8"))
    data.setdefault("intake", {})["stable_seconds"] = 0
    data["retries"] = 1
    data["retry_delay_minutes"] = 0
    data["sftp_connect_attempts"] = 1   # outages fail at once (the hook otherwise waits 3-5 s per attempt)
    # Airflow 3.3's dag.test() cannot run a DAG with a deadline alert: it hands the run the alert's definition
    # where the scheduler hands its stored id, and fails when the run succeeds. The deadline is tested on its
    # own (test_dag_policy.py: its definition and its callback).
    data.setdefault("schedules", {})["send_invs_deadline"] = "none"
    data.update(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data['code']}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def dag_folder(dags: Path, *, shipped_regions: bool = True) -> Path:
    """A copy of dags/: the rpu_dags package, .airflowignore and, with `shipped_regions`, the shipped regions'
    DAG files (region_<code>.py)."""
    ignore = ["__pycache__"] + ([] if shipped_regions else ["region_*.py"])
    shutil.copytree(PROJECT / "dags", dags, ignore=shutil.ignore_patterns(*ignore))
    return dags


def region_add(regions: Path, dags: Path, code: str, name: str, timezone: str,
               establishments: list[tuple[str, str]], *extra: str) -> Path:
    """`rpu region add` as operations run it, files only (no database, no SFTP account): writes
    `regions/<code>.yaml` and `dags/region_<code>.py`. `establishments`: (FINESS, name) pairs."""
    csv = regions.parent / f"{code}-establishments.csv"
    csv.write_text("finess;name\n" + "".join(f"{f};{n}\n" for f, n in establishments), encoding="utf-8")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        for var in ("RPU_ADMIN_DB", "RPU_SFTP_ADMIN"):      # no database, no SFTP: files only
            mp.delenv(var, raising=False)
        rc = main(["region", "add", "--code", code, "--name", name, "--timezone", timezone,
                   "--establishments", str(csv), "--ars-email", f"veille@ars-{code}.example.org",
                   "--regions-dir", str(regions), "--dags-dir", str(dags), *extra])
    assert rc == 0, out.getvalue()
    return regions / f"{code}.yaml"


def amend_region(path: Path, **changes) -> None:
    """Set keys of a region file, nested ones merged (as an operator edits it after `rpu region add`)."""
    def merge(into: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    merge(data, changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


# The 18 regions of France (13 in mainland France, 5 overseas), as `rpu region add` provisions them; some then
# edited to settings of their own, so that a DAG built from defaults instead of its region's file shows.
FRANCE = (   # code, name, time zone
    ("ara", "Auvergne-Rhône-Alpes", "Europe/Paris"), ("bfc", "Bourgogne-Franche-Comté", "Europe/Paris"),
    ("bre", "Bretagne", "Europe/Paris"), ("cvl", "Centre-Val de Loire", "Europe/Paris"),
    ("cor", "Corse", "Europe/Paris"), ("ges", "Grand Est", "Europe/Paris"),
    ("hdf", "Hauts-de-France", "Europe/Paris"), ("idf", "Île-de-France", "Europe/Paris"),
    ("nor", "Normandie", "Europe/Paris"), ("naq", "Nouvelle-Aquitaine", "Europe/Paris"),
    ("occ", "Occitanie", "Europe/Paris"), ("pdl", "Pays de la Loire", "Europe/Paris"),
    ("pac", "Provence-Alpes-Côte d'Azur", "Europe/Paris"), ("gua", "Guadeloupe", "America/Guadeloupe"),
    ("mtq", "Martinique", "America/Martinique"), ("guy", "Guyane", "America/Cayenne"),
    ("lre", "La Réunion", "Indian/Reunion"), ("myt", "Mayotte", "Indian/Mayotte"),
)
OWN_SETTINGS = {
    "ara": {"timeouts": {"intake": {"task_minutes": 11, "dagrun_minutes": 101},
                         "send": {"task_minutes": 12, "dagrun_minutes": 102},
                         "watch": {"task_minutes": 13, "dagrun_minutes": 103},
                         "reprise": {"task_minutes": 14, "dagrun_minutes": 104}}},
    "guy": {"team": "equipe-guyane"},
    "lre": {"retries": 4, "retry_delay_minutes": 2, "retry_max_delay_minutes": 45},
    "cor": {"intake": {"schedule": "*/5 * * * *"},
            "schedules": {"export_ars": "0 7 * * 2", "send_atih": "0 6 * * 1", "send_invs_deadline": "none"}},
    "myt": {"watch": {"cutoff": "07:30"}, "atih": {"frequency": "weekly"}},
}
OLD_CONCENTRATOR = {"mtq", "gua"}      # provisioned with --old-concentrator: their establishments in shadow


@dataclass(frozen=True)
class DagSet:
    """A DAG folder, its regions directory, their regions by code, and one DagBag parsed over them."""
    dags: Path
    regions: Path
    by_code: dict[str, Region]
    bag: object     # airflow.dag_processing.dagbag.DagBag

    def region_of(self, dag) -> Region:
        """The region whose DAG file (`region_<code>.py`) built `dag`; for the national DAG (any other file), the
        ATIH side as the shared DAG helpers know it (rpu.national.settings.National.as_region)."""
        stem = Path(dag.fileloc).stem
        if not stem.startswith("region_"):
            return settings.load().as_region()
        return self.by_code[stem.removeprefix("region_")]

    def is_regional(self, dag) -> bool:
        return Path(dag.fileloc).stem.startswith("region_")


def dag_set(base: Path) -> DagSet:
    """The shipped regions (config/regions and their dags/region_*.py) plus the 18 regions of France provisioned by
    `rpu region add` (two to four establishments each; some with settings of their own), and one DagBag over
    them, parsed as the DAG processor does (RPU_REGIONS_DIR naming the regions)."""
    from airflow.dag_processing.dagbag import DagBag

    dags, regions = dag_folder(base / "dags"), base / "regions"
    shutil.copytree(SHIPPED_REGIONS, regions)
    for r, (code, name, tz) in enumerate(FRANCE, start=1):
        etabs = [(finess_with_key(f"9{r:02d}{i:05d}"), f"Urgences {name} {i}") for i in range(1, 2 + r % 3 + 1)]
        extra = ["--old-concentrator"] if code in OLD_CONCENTRATOR else []
        path = region_add(regions, dags, code, name, tz, etabs, *extra)
        if code in OWN_SETTINGS:
            amend_region(path, **OWN_SETTINGS[code])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPU_REGIONS_DIR", str(regions))
        bag = DagBag(dag_folder=str(dags))
    return DagSet(dags, regions, {r.code: r for r in load_regions(regions)}, bag)


def pg_conn_json(db_url: str) -> str:
    """An Airflow postgres connection, as JSON, for a test database URL."""
    ci = conninfo_to_dict(db_url)
    return json.dumps({"conn_type": "postgres", "host": ci["host"], "port": int(ci["port"]),
                       "login": ci["user"], "schema": ci["dbname"]})
