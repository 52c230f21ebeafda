"""docs/architecture.md kept true: the import contracts (pyproject.toml, [tool.importlinter]) hold, the domain has
no import loop, no module of the shipped package is a room of several trades (over 600 lines), and the rule of
what may leave the region is written once in SQL."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT / "include" / "rpu"
QUERIES = PROJECT / "include" / "sql" / "queries"


def _lint_imports() -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        str(PROJECT / d) for d in ("include", "dags", "plugins")))
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config",
                           str(PROJECT / "pyproject.toml"), "--no-cache"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    """Layers point down only; the domain never imports dags/ or plugins/ (a forbidden import fails this)."""
    out = _lint_imports()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_the_domain_has_no_import_loop():
    import grimp

    graph = grimp.build_graph("rpu", cache_dir=None)
    loops = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                loops.append(" -> ".join((module, *back)))
    assert loops == []


def test_the_domain_does_not_reach_into_dags_or_plugins_by_path():
    """(Imports are the contracts' business; this is the other way in: loading a file or a folder by its path.)"""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"sys\.path\.(insert|append)|spec_from_file_location", text), path


def test_no_module_of_the_shipped_package_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            for n in [len(p.read_text(encoding="utf-8").splitlines())] if n > 600}
    assert long == {}


def test_what_may_leave_the_region_is_defined_once():
    """The held-back rule (quality gate pending, quarantine not released) is the view exportable_visit of
    migration 007: every export and every count of what a send holds reads it, no query spells the filter."""
    for name in ("export_oscour", "export_atih", "export_ars", "reprise_count", "geo_coverage"):
        text = (QUERIES / f"{name}.sql").read_text(encoding="utf-8")
        assert re.search(r"\bFROM exportable_visit\b", text), name
        assert not re.search(r"\bFROM visit\b", text), name
    for path in QUERIES.glob("*.sql"):
        code = "\n".join(line.split("--")[0] for line in path.read_text(encoding="utf-8").splitlines())
        if not path.stem.startswith("quality_") and path.stem != "insert_received_file":
            assert "quality_quarantine" not in code and "gate_pending" not in code, path.name


def test_benchmark_queries_are_not_shipped():
    assert not list(QUERIES.glob("bench_*.sql"))
    used = set(re.findall(r'store\.query\(\s*["\'](\w+)["\']', "\n".join(
        p.read_text(encoding="utf-8") for p in (PROJECT / "bench").glob("*.py"))))
    assert not {n for n in used if n.startswith("bench_")}
