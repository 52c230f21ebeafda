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
    assert "airflow db migrate" in (PROJECT / "deploy" / "airflow-init.sh").read_text()


def test_airflow_services_mount_dags_plugins_and_config_and_the_package_is_installed():
    """The image carries the package (installed, not editable: no ./include mount), the DAGs, plugin and region
    files; on one host the DAGs, plugin and region files are mounted over them."""
    services = compose()["services"]
    for name in AIRFLOW_SERVICES:
        mounts = {v.split(":")[1] for v in services[name]["volumes"] if ":" in v}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/project/config"} <= mounts, name
        assert "/opt/airflow/project/include" not in mounts, name
        sources = {v.split(":")[0] for v in services[name]["volumes"]}
        for src in ("./dags", "./plugins", "./config"):
            assert src in sources and (PROJECT / src).is_dir(), (name, src)
        assert services[name]["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    dockerfile = (PROJECT / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*--no-deps \.$", dockerfile, re.M)
    assert "-e ." not in dockerfile


def test_image_is_the_locked_airflow_version():
    locked = re.search(r"^apache-airflow==(\S+) ", (PROJECT / "requirements.lock").read_text(), re.M).group(1)
    dockerfile = (PROJECT / "Dockerfile").read_text()
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(locked)}$", dockerfile, re.M)
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile
    assert "--require-hashes -r requirements.lock" in dockerfile and "requirements-dev" not in dockerfile
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
    assert copied - {"requirements.lock", "pyproject.toml", "setup.py"} == {
        "include", "dags", "plugins", "config", "deploy/entrypoint.sh", "deploy/airflow-init.sh"}
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


def test_every_long_running_service_has_a_healthcheck():
    services = compose()["services"]
    for name, svc in services.items():
        if name == "airflow-init":   # one-shot: the others wait for it to complete successfully
            assert "healthcheck" not in svc
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    for name in AIRFLOW_SERVICES[:-1]:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_the_data_directory_exists_in_the_image_owned_by_the_airflow_user():
    """A new named volume takes the ownership of the image's directory: it must be the containers' user's."""
    dockerfile = (PROJECT / "Dockerfile").read_text()
    data = compose()["x-airflow-common"]["environment"]["RPU_DATA_DIR"]
    assert f"rpu-data:{data}" in compose()["x-airflow-common"]["volumes"]
    run = " ".join(line for line in dockerfile.split("RUN ")[1:] if "mkdir" in line)
    assert f"mkdir -p {data}" in run
    assert re.search(rf'chown -R "\$\{{AIRFLOW_UID\}}:0" {re.escape(data)}', run)
    assert re.search(r"^ARG AIRFLOW_UID=50000$", dockerfile, re.M)
    assert compose()["x-airflow-common"]["user"] == "${AIRFLOW_UID:-50000}:0"


def test_init_goes_through_the_entrypoint_as_the_airflow_user_and_fails_loudly():
    services = compose()["services"]
    init = services["airflow-init"]
    assert "entrypoint" not in init                          # the image's entrypoint: secrets checked first
    assert init["user"] == "${AIRFLOW_UID:-50000}:0"          # the Airflow user, not root
    assert init["environment"]["RPU_INIT"] == "true"
    assert init["command"][0] == "bash"
    script = PROJECT / init["command"][1].replace("/opt/airflow/project/", "")
    text = script.read_text()
    assert "set -euo pipefail" in text and "|| true" not in text
    for step in ("airflow db migrate", 'rpu db migrate --region "$code"', "rpu db migrate --national",
                 "rpu roles sync"):
        assert step in text, step
    assert "--password" not in text   # the admin password is never on a command line
    assert "/opt/airflow/project/deploy/entrypoint.sh" in (PROJECT / "Dockerfile").read_text().split("ENTRYPOINT")[1]
    for sh in (PROJECT / "deploy").rglob("*.sh"):
        out = subprocess.run(["bash", "-n", str(sh)], capture_output=True, text=True)
        assert out.returncode == 0, (sh, out.stderr)


def test_the_image_installs_no_test_tool():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    installed = re.findall(r"-r (\S+)", dockerfile)
    assert installed
    # asyncssh is a test tool here (the embedded SFTP server) but also a requirement of Airflow's SFTP provider:
    # it is in the runtime lock for that reason, and allowed
    tools = ("pytest", "playwright", "aiosmtpd", "check-jsonschema", "hypothesis", "import-linter")
    assert "requirements-dev" not in dockerfile
    for req in installed:
        names = {re.split(r"[=<>\[ ;]", line.strip())[0].lower()
                 for line in (PROJECT / req).read_text().splitlines() if line.strip() and not line.startswith("#")}
        assert names and not names & set(tools), (req, names & set(tools))


def test_the_deposit_server_is_debian_openssh_chrooted_and_sftp_only():
    sftp = compose()["services"]["sftp"]
    assert sftp["build"] == "./deploy/sftp" and "atmoz" not in str(sftp)
    assert (PROJECT / "deploy" / "sftp" / "Dockerfile").read_text().count("FROM debian:") == 1
    config = dict(line.split(None, 1) for line in (PROJECT / "deploy" / "sftp" / "sshd_config").read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
    assert config["ForceCommand"] == "internal-sftp -l INFO" and config["ChrootDirectory"] == "%h"
    assert config["PermitRootLogin"] == "no" and config["AllowTcpForwarding"] == "no"
    volumes = {v.split(":")[-2] if v.endswith(":ro") else v.split(":")[-1] for v in sftp["volumes"]}
    assert {"/etc/ssh/keys", "/srv/sftp", "/etc/sftp/users.conf"} <= volumes   # host keys kept in a volume
    entry = (PROJECT / "deploy" / "sftp" / "entrypoint.sh").read_text()
    assert "plain-text password refused" in entry
