"""The start-up check of the image's secrets (rpu.secrets_check) and the entrypoint that runs it before Airflow."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rpu import secrets_check as sc

PROJECT = Path(__file__).resolve().parents[1]
FERNET = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="       # a well-formed key (32 bytes, URL-safe base64)
# Chosen secrets, fixed: random ones (secrets.token_urlsafe) now and then contain a placeholder word ("todo",
# "xxxx"…) and made these tests fail at random
JWT_KEY = "u7Kq2VwX9pLm4Rz8NcB3tYh6Gd1Fs5Je0Qa"
API_KEY = "Hn4Tz8Qw2Ek6Ry0Ui3Op7As5Df9Gh1Jk"
FILE_KEY = "Rt5Yu8Io2Pa6Sd9Fg3Hj7Kl1Zx4Cv0Bn"


def good_env(**over) -> dict[str, str]:
    env = {
        "AIRFLOW__CORE__FERNET_KEY": FERNET,
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_KEY,
        "AIRFLOW__API__SECRET_KEY": API_KEY,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:Vb6Nm2Qx8Wc4Ze7R@postgres/airflow",
        "AIRFLOW_ADMIN_PASSWORD": "Lp3Ks9Dj5Fh7Gt2M",
        "RPU_DB_ADMIN_PASSWORD": "Yc8Tv1Bn6Mq4Wx0Z",
    }
    env.update(over)
    return {k: v for k, v in env.items() if v is not None}


def test_chosen_secrets_pass():
    assert sc.problems(good_env(), init=True) == []


@pytest.mark.parametrize("name,value,rule", [
    ("AIRFLOW__API_AUTH__JWT_SECRET", "change-me", "placeholder"),
    ("AIRFLOW__API_AUTH__JWT_SECRET", "CHANGE_ME_please_0123456789abcdefghijkl", "placeholder"),
    ("AIRFLOW__API__SECRET_KEY", "Zx8-kq2Lm4", "too short"),
    ("AIRFLOW__API__SECRET_KEY", "a" * 40, "placeholder"),
    ("AIRFLOW__CORE__FERNET_KEY", "change-me", "placeholder"),
    ("AIRFLOW__CORE__FERNET_KEY", "bm90IGEga2V5IGF0IGFsbA==", "not a Fernet key"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://airflow:change-me@postgres/airflow", "placeholder"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://airflow:Zq81mLx@postgres/airflow", "too short"),
    ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://airflow@postgres/airflow", "no password"),
    ("AIRFLOW_ADMIN_PASSWORD", "admin", "placeholder"),
    ("RPU_DB_ADMIN_PASSWORD", "", "not set"),
])
def test_a_placeholder_short_or_missing_secret_is_refused_by_name_never_by_value(name, value, rule):
    found = sc.problems(good_env(**{name: value}), init=True)
    assert len(found) == 1 and found[0].startswith(name) and rule in found[0], found
    if value and len(value) > 3:
        assert value not in found[0]


def test_init_only_secrets_are_checked_by_the_init_only():
    env = good_env(AIRFLOW_ADMIN_PASSWORD=None, RPU_DB_ADMIN_PASSWORD=None)
    assert sc.problems(env) == []
    assert [p.split(":")[0] for p in sc.problems(env, init=True)] == ["AIRFLOW_ADMIN_PASSWORD", "RPU_DB_ADMIN_PASSWORD"]


def test_the_values_of_env_example_never_pass():
    """Left as they are in .env.example, the secrets stop the stack."""
    example = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (PROJECT / ".env.example").read_text(), re.M))
    env = good_env(
        AIRFLOW__CORE__FERNET_KEY=example["AIRFLOW_FERNET_KEY"],
        AIRFLOW__API_AUTH__JWT_SECRET=example["AIRFLOW_JWT_SECRET"],
        AIRFLOW__API__SECRET_KEY=example["AIRFLOW_API_SECRET_KEY"],
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://airflow:{example['AIRFLOW_DB_PASSWORD']}@postgres/airflow",
        AIRFLOW_ADMIN_PASSWORD=example["AIRFLOW_ADMIN_PASSWORD"],
        RPU_DB_ADMIN_PASSWORD=example["RPU_DB_ADMIN_PASSWORD"],
    )
    assert len(sc.problems(env, init=True)) == 6
    for value in ("change-me", "changeme", "admin", "password", "secret"):
        assert sc.placeholder(value), value


def test_secrets_from_a_file_or_a_command(tmp_path):
    key = FILE_KEY
    f = tmp_path / "jwt"
    f.write_text(key + "\n")
    env = good_env(AIRFLOW__API_AUTH__JWT_SECRET=None, AIRFLOW__API_AUTH__JWT_SECRET_FILE=str(f),
                   AIRFLOW__API__SECRET_KEY=None, AIRFLOW__API__SECRET_KEY_CMD=f"cat {f}")
    assert sc.resolve("AIRFLOW__API_AUTH__JWT_SECRET", env) == key
    assert sc.resolve("AIRFLOW__API__SECRET_KEY", env) == key
    assert sc.problems(env) == []
    f.write_text("change-me")
    assert len(sc.problems(env)) == 2
    env["AIRFLOW__API__SECRET_KEY_CMD"] = "false"
    assert any("_CMD: the command failed" in p for p in sc.problems(env))
    env["AIRFLOW__API_AUTH__JWT_SECRET_FILE"] = str(tmp_path / "missing")
    assert any("_FILE: cannot read" in p for p in sc.problems(env))


def _entrypoint(tmp_path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """deploy/entrypoint.sh with a stand-in for the official entrypoint that records its arguments and the secret."""
    stub = tmp_path / "official-entrypoint"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$RECORD"\n'
                    'printf "%s" "$AIRFLOW__API_AUTH__JWT_SECRET" > "$RECORD.jwt"\n')
    stub.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "python").unlink(missing_ok=True)
    (bindir / "python").symlink_to(sys.executable)
    full = {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(PROJECT / "include"),
            "AIRFLOW_ENTRYPOINT": str(stub), "RECORD": str(tmp_path / "record"), **env}
    return subprocess.run(["bash", str(PROJECT / "deploy" / "entrypoint.sh"), *args], env=full,
                          capture_output=True, text=True, timeout=60)


def test_the_entrypoint_starts_airflow_with_chosen_secrets_read_from_files(tmp_path):
    key = FILE_KEY
    (tmp_path / "jwt").write_text(key)
    env = good_env(AIRFLOW__API_AUTH__JWT_SECRET=None, AIRFLOW__API_AUTH__JWT_SECRET_FILE=str(tmp_path / "jwt"))
    out = _entrypoint(tmp_path, env, "scheduler")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "record").read_text() == "scheduler\n"
    assert (tmp_path / "record.jwt").read_text() == key


def test_the_entrypoint_refuses_to_start_with_a_placeholder(tmp_path):
    out = _entrypoint(tmp_path, good_env(AIRFLOW__API__SECRET_KEY="change-me"), "api-server")
    assert out.returncode == 1
    assert "AIRFLOW__API__SECRET_KEY: a placeholder" in out.stderr and "change-me" not in out.stderr
    assert not (tmp_path / "record").exists()   # Airflow never started


def test_the_init_also_checks_the_admin_password(tmp_path):
    env = good_env(AIRFLOW_ADMIN_PASSWORD="admin12345")
    assert _entrypoint(tmp_path, env, "version").returncode == 0
    (tmp_path / "record").unlink()
    out = _entrypoint(tmp_path, {**env, "RPU_INIT": "true"}, "bash", "init.sh")
    assert out.returncode == 1 and "AIRFLOW_ADMIN_PASSWORD" in out.stderr
    assert not (tmp_path / "record").exists()
