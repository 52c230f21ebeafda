"""scripts/setup-system on a fresh Debian, with stand-ins for the OS's package manager (apt-get records what it
is asked and drops the files a package would) and for the interpreter probed (python3 without ensurepip, as Debian
ships it without python3-venv): what it installs, in which order, and that no PostgreSQL cluster would be created."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_DIR / "scripts" / "setup-system"


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fresh_debian(tmp_path):
    """A PATH where python3 has no ensurepip, `id -u` says root or not, apt-get records its calls (with the
    createcluster.conf it sees at each), and no PostgreSQL binaries exist (RPU_SETUP_PG_LIB is empty)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    etc = tmp_path / "postgresql-common"
    calls = tmp_path / "apt-calls"
    _stub(bin_ / "python3", f"""if [ "$1" = -c ] && [[ "$2" == *ensurepip* ]]; then exit 1; fi
exec {sys.executable} "$@"
""")
    _stub(bin_ / "apt-get", f"""echo "$* | conf: $(tr '\\n' ' ' < {etc}/createcluster.conf 2>/dev/null)" >> {calls}
""")
    _stub(bin_ / "id", 'if [ "$1" = -u ]; then echo "${FAKE_UID:-0}"; else /usr/bin/id "$@"; fi\n')
    for tool in ("chromium", "redis-server"):   # present: only the packages under test are missing
        _stub(bin_ / tool, "exit 0\n")
    env = dict(os.environ, PATH=f"{bin_}:/usr/bin:/bin", RPU_SETUP_PG_LIB=str(tmp_path / "no-postgresql"),
               RPU_SETUP_PG_COMMON_ETC=str(etc))
    env.pop("PYTHON", None)
    return env, calls, etc


def _run(env, *args):
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def _installs(calls: Path) -> list[str]:
    return [line for line in calls.read_text().splitlines() if line.startswith("install")]


def test_as_root_it_installs_venv_and_postgresql_without_its_default_cluster(fresh_debian):
    env, calls, etc = fresh_debian
    r = _run(env)
    assert r.returncode == 0, r.stderr
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    installs = _installs(calls)
    # postgresql-common first, alone; then the server once createcluster.conf says no main cluster
    assert "postgresql-common" in installs[0] and " postgresql " not in f" {installs[0].split('|')[0]} "
    assert installs[-1].split("|")[0].split()[-2:] == [f"python{ver}-venv", "postgresql"]
    assert "create_main_cluster = false" in installs[-1].split("conf:")[1]
    assert (etc / "createcluster.conf").read_text().strip() == "create_main_cluster = false"
    assert all("--force-confold" in line for line in installs)   # our createcluster.conf is kept, no prompt
    assert "pypi_postgres" not in r.stdout


def test_an_existing_createcluster_conf_gets_its_line_changed(fresh_debian):
    env, calls, etc = fresh_debian
    etc.mkdir()
    (etc / "createcluster.conf").write_text("# comment\n#create_main_cluster = true\nstart_conf = 'auto'\n")
    assert _run(env).returncode == 0
    assert (etc / "createcluster.conf").read_text() == (
        "# comment\ncreate_main_cluster = false\nstart_conf = 'auto'\n")


def test_not_root_it_says_what_to_install_and_fails(fresh_debian):
    env, calls, _ = fresh_debian
    env["FAKE_UID"] = "1000"
    r = _run(env)
    assert r.returncode == 1
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert f"sudo apt-get install python{ver}-venv" in r.stderr
    assert "pypi_postgres=yes" in r.stdout          # PostgreSQL then comes from PyPI (scripts/setup)
    assert not calls.exists()


def test_nothing_missing_nothing_installed(fresh_debian, tmp_path):
    env, calls, _ = fresh_debian
    (tmp_path / "bin" / "python3").unlink()           # the real interpreter: it has ensurepip
    initdb = tmp_path / "no-postgresql" / "15" / "bin" / "initdb"
    initdb.parent.mkdir(parents=True)
    _stub(initdb, "exit 0\n")
    env["PATH"] = f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"
    r = _run(env)
    assert r.returncode == 0, r.stderr
    assert not calls.exists() and r.stdout == ""
