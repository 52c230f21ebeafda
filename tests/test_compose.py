"""docker-compose.yaml: valid against the Compose specification and consistent with the project (there is no
Docker engine on the development machines, so this is how the file is checked)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
COMPOSE = PROJECT / "docker-compose.yaml"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer", "airflow-init")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_valid_against_the_compose_specification():
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    out = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_services_of_a_production_like_stack():
    services = compose()["services"]
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis", "rpu-postgres", "sftp"} <= set(services)
    assert services["airflow-worker"]["command"] == "celery worker"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    assert "airflow db migrate" in "".join(services["airflow-init"]["command"])


def test_airflow_services_mount_dags_plugins_include_and_config():
    services = compose()["services"]
    for name in AIRFLOW_SERVICES:
        mounts = {v.split(":")[1] for v in services[name]["volumes"] if ":" in v}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/project/include",
                "/opt/airflow/project/config"} <= mounts, name
        sources = {v.split(":")[0] for v in services[name]["volumes"]}
        for src in ("./dags", "./plugins", "./include", "./config"):
            assert src in sources and (PROJECT / src).is_dir(), (name, src)
        assert services[name]["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"


def test_image_is_the_locked_airflow_version():
    locked = re.search(r"^apache-airflow==(\S+)$", (PROJECT / "constraints.txt").read_text(), re.M).group(1)
    dockerfile = (PROJECT / "Dockerfile").read_text()
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(locked)}$", dockerfile, re.M)
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile
    assert "-r requirements.txt -c constraints.txt" in dockerfile
    assert f"apache-airflow=={locked}" in (PROJECT / "requirements.txt").read_text()


def test_ports_bound_to_localhost_and_no_secret_in_the_file():
    data = compose()
    for name, svc in data["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    text = COMPOSE.read_text(encoding="utf-8")
    for key in ("PASSWORD", "FERNET_KEY", "SECRET", "JWT"):
        for line in text.splitlines():
            if key in line and ":" in line and not line.strip().startswith("#"):
                value = line.split(":", 1)[1]
                assert "${" in value or "$${" in value or key not in line.split(":", 1)[0], line


def test_every_required_variable_is_documented_in_env_example():
    required = set(re.findall(r"\$\{([A-Z0-9_]+)(?::[?-])", COMPOSE.read_text(encoding="utf-8")))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (PROJECT / ".env.example").read_text(), re.M))
    assert required - documented == set()
    assert ".env" in (PROJECT / ".gitignore").read_text().split()


def test_developer_tools_stay_out_of_the_image_and_the_package():
    """tools/rpu_dev (the demo, the local services) is for developers: the image copies only what the concentrator
    runs, no service mounts tools/, the wheel's packages are include/rpu*, and nothing shipped imports rpu_dev."""
    import tomllib

    copied = set()
    for line in (PROJECT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {w.removeprefix("./").rstrip("/") for w in line.split()[1:-1] if not w.startswith("--")}
    assert copied == {"requirements.txt", "constraints.txt", "pyproject.toml", "include"}
    for name, svc in compose()["services"].items():
        assert not any(str(v).split(":")[0].rstrip("/") in ("./tools", ".") for v in svc.get("volumes", [])), name
    find = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find == {"where": ["include"], "include": ["rpu*"]}
    assert not (PROJECT / "include" / "rpu_dev").exists()
    shipped = [p for d in ("include", "dags", "plugins") for p in (PROJECT / d).rglob("*.py")]
    assert shipped
    offenders = [str(p.relative_to(PROJECT)) for p in shipped
                 if re.search(r"^\s*(from|import)\s+rpu_dev\b", p.read_text(encoding="utf-8"), re.M)]
    assert offenders == []
