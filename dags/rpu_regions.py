"""Every region's DAGs, generated from config/regions/*.yaml.

One factory per kind of DAG (dags/rpu_dags/<kind>.py, each `build_<kind>(region)` listed in the module's
BUILDERS), called for each region file. Parsing reads the small YAML files only: no network, no database, no
heavy import. When a task runs, Airflow tells which DAG it needs (get_parsing_context) and only that region is
built.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from airflow.sdk import get_parsing_context

from rpu.config import load_region, region_files

# The factories live in dags/rpu_dags (ignored as DAG files); Airflow puts the bundle on sys.path when it
# runs tasks, not always when a test builds a DagBag: make it explicit.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import rpu_dags  # noqa: E402


def factories() -> tuple:
    """Every `BUILDERS` tuple of the modules of dags/rpu_dags, in module name order."""
    found = []
    for info in sorted(pkgutil.iter_modules(rpu_dags.__path__), key=lambda m: m.name):
        found += getattr(importlib.import_module(f"rpu_dags.{info.name}"), "BUILDERS", ())
    return tuple(found)


def _wanted(code: str) -> bool:
    dag_id = get_parsing_context().dag_id
    return dag_id is None or dag_id.startswith(f"{code}_")


for _path in region_files():
    if not _wanted(_path.stem):
        continue
    _region = load_region(_path)
    for _build in factories():
        globals()[f"{_region.code}__{_build.__name__}"] = _build(_region)
