"""Packaging (issue 15, point 4): every third-party package the domain package imports is declared; the
requirements are pinned in the hashed locks scripts/lock makes (checked offline here: same versions, every entry
hashed); a built wheel carries the SQL, XSD, suites, templates and sample data, and `rpu validate` runs from it in
any directory, without the checkout."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from support.rpu_xml import rpu_file, visit

PROJECT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!; ]", name.strip(), maxsplit=1)[0]).lower()


def _imports() -> dict[str, set[str]]:
    """{top-level module or airflow provider module: files importing it} over include/rpu (inside functions too)."""
    found: dict[str, set[str]] = {}
    for path in (PROJECT / "include" / "rpu").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                parts = name.split(".")
                key = ".".join(parts[:3]) if parts[:2] == ["airflow", "providers"] else parts[0]
                found.setdefault(key, set()).add(path.name)
    return found


def _distribution(module: str) -> str | None:
    if module.startswith("airflow.providers."):
        return f"apache-airflow-providers-{module.split('.')[2].replace('_', '-')}"
    if module == "airflow":
        return "apache-airflow"
    dists = packages_distributions().get(module)
    return canonical(dists[0]) if dists else None


def _declared(*extras: str) -> set[str]:
    names = list(PYPROJECT["dependencies"])
    for extra in extras:
        names += PYPROJECT["optional-dependencies"][extra]
    return {canonical(n) for n in names}


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            spec = line.split()[0]
            out[canonical(spec.split("==")[0])] = spec.split("==")[1]
    return out


def _lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for line in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        if line.strip() and not line.startswith("#"):
            spec, *hashes = line.split()
            out[canonical(spec.split("==")[0])] = (spec.split("==")[1], hashes)
    return out


def test_every_imported_third_party_package_is_declared():
    runtime = _declared("quality", "airflow")
    tools = _declared("test") - runtime
    missing, tooling = {}, {}
    for module, files in sorted(_imports().items()):
        if module.split(".")[0] in sys.stdlib_module_names or module.split(".")[0] == "rpu":
            continue
        dist = _distribution(module)
        assert dist, f"{module} (imported by {sorted(files)}) is not installed"
        if dist not in runtime:
            missing[dist] = sorted(files)
        if dist in tools:
            tooling[dist] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert not tooling, f"the package imports test tools: {tooling}"


def test_what_pyproject_declares_is_pinned_in_the_requirements():
    runtime, dev = _pins(PROJECT / "requirements.txt"), _pins(PROJECT / "requirements-dev.txt")
    assert _declared("quality", "airflow") - set(runtime) == set()
    assert _declared("test") - _declared() - set(dev) == set()
    assert set(runtime) & set(dev) == set()


def test_the_locks_pin_every_requirement_with_hashes():
    """The offline drift check: each requirement at its version in the locks, each lock entry with its sha256,
    the development lock adding only what the runtime one lacks; the recipe exists (scripts/lock --check does the
    full re-resolution, with the package index)."""
    runtime_lock, dev_lock = _lock(PROJECT / "requirements.lock"), _lock(PROJECT / "requirements-dev.lock")
    for path, lock, extra in (("requirements.txt", runtime_lock, {}), ("requirements-dev.txt", dev_lock, runtime_lock)):
        for name, version in _pins(PROJECT / path).items():
            where = lock.get(name) or extra.get(name)
            assert where and where[0] == version, f"{path}: {name}=={version}, lock: {where and where[0]}"
    for name, (version, hashes) in {**runtime_lock, **dev_lock}.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), name
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), name
    assert set(runtime_lock) & set(dev_lock) == set()
    for name in ("requirements.lock", "requirements-dev.lock"):
        assert "generated by scripts/lock" in (PROJECT / name).read_text().splitlines()[0]
    assert os.access(PROJECT / "scripts" / "lock", os.X_OK)
    assert not (PROJECT / "constraints.txt").exists()
    setup = (PROJECT / "scripts" / "setup").read_text()
    assert "--require-hashes -r requirements.lock -r requirements-dev.lock" in setup


@pytest.mark.slow
def test_the_wheel_carries_its_data_and_rpu_validate_runs_from_it_anywhere(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(PROJECT)], check=True, cwd=tmp_path, timeout=300)
    (wheel,) = wheels.glob("rpu_concentrator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("rpu/_data/sql/migrations/001_intake.sql", "rpu/_data/sql/national/queries/grid.sql",
                 "rpu/_data/xsd/rpu2006.xsd", "rpu/_data/expectations/rpu_visit.json",
                 "rpu/_data/data/pmsi_geo_sample.csv"):
        assert data in names, data
    assert any(n.startswith("rpu/_data/templates/mail/") for n in names)
    assert not any(n.startswith(("rpu_dev/", "include/", "tests/")) for n in names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "ok.xml").write_bytes(rpu_file([visit(), visit()]))
    (work / "bad.xml").write_bytes(rpu_file([visit(ENTREE="32/13/2026 10:00")]))
    env = {k: v for k, v in os.environ.items() if k not in ("RPU_REGIONS_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)            # before the checkout's editable install on the path
    run = [sys.executable, "-c", "import sys, rpu; from rpu import resources; from rpu.cli import main; "
           "print(rpu.__file__, resources.ROOT, file=sys.stderr); sys.exit(main(sys.argv[1:]))", "validate"]
    ok = subprocess.run([*run, "ok.xml"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    where = ok.stderr.splitlines()[0].split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "rpu" / "_data"), where
    assert "ACCEPTÉ" in ok.stdout, ok.stdout
    bad = subprocess.run([*run, "bad.xml"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert "[ENTREE_INVALID] ligne 5, passage n°1" in bad.stdout, bad.stdout + bad.stderr   # judged alone, its rule
    (work / "broken.xml").write_bytes(rpu_file([visit()])[:-40])
    broken = subprocess.run([*run, "broken.xml"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1 and "broken.xml" in broken.stdout and "REJETÉ" in broken.stdout, broken.stdout
