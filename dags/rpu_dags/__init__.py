"""DAG factories, one module per kind of DAG (`build_<kind>(region)`, listed in the module's BUILDERS), and
`build_region`, which every per-region DAG file calls.

Each region has its own DAG file, `dags/region_<code>.py` (written by `rpu region add`; its text is
rpu.dagset.stub_text), whose only content is a call to `build_region`: a broken region file then gives an import
error for that region's file alone, and a task run parses only its own region. This package is not a DAG file itself (dags/.airflowignore).
"""
from __future__ import annotations

import importlib
import pkgutil

from rpu import dagset
from rpu.config import get_region


def factories() -> tuple:
    """Every `BUILDERS` tuple of this package's modules, in module name order."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        found += getattr(importlib.import_module(f"{__name__}.{info.name}"), "BUILDERS", ())
    return tuple(found)


def build_region(dag_file: str, namespace: dict) -> None:
    """Build every DAG of the region named by the DAG file into its module namespace.

    Parsing reads one small YAML file: no network, no database, no heavy import. A ConfigError (an invalid
    region file) propagates: Airflow shows it as this file's import error, naming the region and the fault."""
    from airflow.sdk import get_parsing_context

    code = dagset.region_code(dag_file)
    wanted = get_parsing_context().dag_id
    if wanted is not None and not wanted.startswith(f"{code}_"):
        return
    region = get_region(code)
    for build in factories():
        dag = build(region)
        namespace[dag.dag_id] = dag
