"""`rpu region add` and `rpu establishment add` against a real PostgreSQL and a real SFTP server: what they create,
that a rerun changes nothing, that bad input is refused before anything is created."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors, sql

from rpu import dagset, store
from rpu.cli import main
from rpu.config import finess_with_key, load_region
from support.rpu_xml import rpu_file, visit

PROJECT = Path(__file__).resolve().parents[1]
DAGS = PROJECT / "dags"
KINDS = ("inbox", "archive", "rejected", "ack")
# Roles this module creates: the test cluster trusts everyone, except these, which must give their password.
CODES = ("pva", "pvb", "pvc", "pvd", "pve", "pvf")
ADMIN_PW = "admin-" + uuid.uuid4().hex

F1, F2, F3, F4 = (finess_with_key(f"9911000{i}") for i in range(1, 5))
EJ = finess_with_key("99110100")


def _stub(code: str) -> str:
    return dagset.stub_text(code)


@pytest.fixture(scope="module")
def scram_only(pg_server):
    """pg_hba.conf: the roles of this module authenticate with their password (SCRAM), not by trust."""
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("".join(f"host all rpu_{c} 127.0.0.1/32 scram-sha-256\n" for c in CODES) + original)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    yield
    hba.write_text(original)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture
def env(pg_server, sftp_server, scram_only, tmp_path, monkeypatch):
    """Temp regions/dags dirs, an SFTP admin account chrooted to the intake root, cleanup of databases/roles."""
    for var in ("RPU_ADMIN_DB", "RPU_SFTP_ADMIN", "RPU_REGIONS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "data"))
    admin = f"adm{uuid.uuid4().hex[:8]}"
    intake = sftp_server.add_user(admin, ADMIN_PW, tmp_path / "intake")
    monkeypatch.setenv("RPU_SFTP_ADMIN_PASSWORD", ADMIN_PW)
    e = Env(tmp_path, pg_server, sftp_server, admin, intake)
    yield e
    sftp_server.remove_user(admin)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        for c in CODES:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(f"rpu_{c}")))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"rpu_{c}")))


class Env:
    def __init__(self, tmp, pg, sftp, admin, intake):
        self.tmp, self.pg, self.sftp, self.admin, self.intake = tmp, pg, sftp, admin, intake
        self.regions, self.dags = tmp / "regions", tmp / "dags"

    @property
    def sftp_url(self) -> str:
        return f"sftp://{self.admin}@127.0.0.1:{self.sftp.port}/?host_key={quote(self.sftp.host_key_public, safe='')}"

    def csv(self, text: str, name: str = "etabs.csv") -> Path:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return path

    def region_add(self, capsys, code, *extra, name="Région test", tz="Europe/Paris", db=True, sftp=True):
        argv = ["region", "add", "--code", code, "--name", name, "--timezone", tz,
                "--regions-dir", str(self.regions), "--dags-dir", str(self.dags), *extra]
        if not {"--ars-email", "--ars-none", "--no-ars"} & set(extra):
            argv += ["--ars-email", "veille@ars-test.example.org"]
        argv = [a for a in argv if a != "--no-ars"]
        if db:
            argv += ["--admin-db", self.pg.url()]
        if sftp:
            argv += ["--sftp-admin", self.sftp_url]
        rc = main(argv)
        out, err = capsys.readouterr()
        return rc, out, err

    def etab_add(self, capsys, region, *extra, sftp=True):
        argv = ["establishment", "add", "--region", region, "--regions-dir", str(self.regions), *extra]
        if sftp:
            argv += ["--sftp-admin", self.sftp_url]
        rc = main(argv)
        out, err = capsys.readouterr()
        return rc, out, err

    def database_exists(self, name: str) -> bool:
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def role(self, name: str):
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            return conn.execute("SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
                                "rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)).fetchone()

    def role_url(self, code: str, password: str) -> str:
        return f"postgresql://rpu_{code}:{quote(password, safe='')}@127.0.0.1:{self.pg.port}/rpu_{code}"

    def tree(self) -> set[str]:
        return {str(p.relative_to(self.intake)) for p in self.intake.rglob("*") if p.is_dir()}


def _password(out: str, code: str) -> str:
    """The new role's password, printed once on its own line — never inside a command to paste."""
    [pw] = re.findall(rf"password of role rpu_{code} \(shown once[^)]*\): (\S+)", out)
    assert f"postgres://rpu_{code}:<password>@" in out and f"rpu_{code}:{pw}@" not in out
    return pw


THREE = f"finess;name;finess_ej;status;contact\n{F1};CH de Lyonville;{EJ};;\n{F2};\"CHU; site Nord\";{EJ};shadow;\n" \
        f"{F3};Clinique du Lac;;;it@clinique-lac.example\n"


# --- region add ---------------------------------------------------------------------------------------------

def test_region_add_creates_everything_and_a_rerun_changes_nothing(env, capsys):
    csv = env.csv(THREE)
    rc, out, err = env.region_add(capsys, "pva", "--establishments", str(csv), tz="America/Cayenne")
    assert rc == 0, err

    # region file: valid, only the non-default keys, a comment header
    path = env.regions / "pva.yaml"
    region = load_region(path)
    assert (region.code, region.name, region.timezone) == ("pva", "Région test", "America/Cayenne")
    assert [(e.finess, e.name, e.status, e.finess_ej, e.contact) for e in region.establishments] == [
        (F1, "CH de Lyonville", "active", EJ, None), (F2, "CHU; site Nord", "shadow", EJ, None),
        (F3, "Clinique du Lac", "active", None, "it@clinique-lac.example")]
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert not re.search(r"^(team|connections|intake|retries|old_concentrator):", text, re.M)
    # DAG file
    assert (env.dags / "region_pva.py").read_text() == _stub("pva")

    # database and role: least privileges
    assert env.database_exists("rpu_pva")
    assert env.role("rpu_pva") == (True, False, False, False, False, False)
    password = _password(out, "pva")
    assert out.count(password) == 1, "the password is printed exactly once"
    assert password not in text and password not in err
    with psycopg.connect(env.pg.url("rpu_pva")) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migration ORDER BY version")] == \
               [name for _, name, _ in store.migrations()]
        owners = {r[0] for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert "rpu_pva" not in owners
    url = env.role_url("pva", password)
    with pytest.raises(psycopg.OperationalError):       # the password really is checked
        psycopg.connect(env.role_url("pva", "wrong-password")).close()

    # the role can do what the concentrator does: load a file (temp stage table, inserts), read the visits
    from rpu.intake import ingest_path

    xml = env.tmp / "RPU_test.xml"
    xml.write_bytes(rpu_file([visit(), visit(ENTREE="31/10/2026 09:00", SORTIE="31/10/2026 11:00")], finess=F3))
    receipt = ingest_path(region, url, xml, sender=F3)
    assert (receipt["status"], receipt["visits_loaded"]) == ("accepted", 2), receipt
    assert receipt["quality"]["status"] in ("passed", "failed"), receipt["quality"]   # the gate could run too
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM visit WHERE etab = %s", (F3,)).fetchone()[0] == 2
        conn.execute("SELECT count(*) FROM alert")
        conn.execute("SELECT * FROM schema_migration")
        # …but nothing more
        for statement, error in [
            ("CREATE TABLE intruder (x int)", errors.InsufficientPrivilege),
            ("DROP TABLE visit", errors.InsufficientPrivilege),
            ("TRUNCATE visit", errors.InsufficientPrivilege),
            ("ALTER TABLE visit ADD COLUMN x int", errors.InsufficientPrivilege),
            ("DELETE FROM schema_migration", errors.InsufficientPrivilege),
            ("CREATE SCHEMA intruder", errors.InsufficientPrivilege),
        ]:
            with pytest.raises(error):
                conn.execute(statement)
    with psycopg.connect(env.pg.url(), autocommit=True) as conn:   # only the role (and the owner) may connect
        acl = conn.execute("SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC'), a.privilege_type "
                           "FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = 'rpu_pva'").fetchall()
        assert {g for g, _ in acl} == {"postgres", "rpu_pva"}
        assert {p for g, p in acl if g == "rpu_pva"} == {"CONNECT", "TEMPORARY"}

    # SFTP: one inbox/archive/rejected/ack per establishment, as the intake DAG will look for them
    assert env.tree() == {f for f in (F1, F2, F3)} | {f"{f}/{k}" for f in (F1, F2, F3) for k in KINDS}
    for e in region.establishments:
        assert (env.intake / region.remote_dir("inbox", e.finess)).is_dir()
    assert "sftp_intake --conn-uri" in out and "host_key=ssh-ed25519%20" in out

    # rerun: no change, exit 0, password kept
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (path, env.dags / "region_pva.py")}
    rc, out2, err2 = env.region_add(capsys, "pva", "--establishments", str(csv), tz="America/Cayenne")
    assert rc == 0, err2
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert "unchanged" in out2 and "0 created, 12 already there" in out2 and "schema: up to date" in out2
    assert "postgres://rpu_pva:<password>@" in out2 and password not in out2
    psycopg.connect(url).close()                          # the old password still works


def test_rotate_password(env, capsys):
    rc, out, err = env.region_add(capsys, "pvb", sftp=False)
    assert rc == 0, err
    old = _password(out, "pvb")
    rc, out, err = env.region_add(capsys, "pvb", "--rotate-password", sftp=False)
    assert rc == 0, err
    new = _password(out, "pvb")
    assert new != old and "password rotated" in out
    psycopg.connect(env.role_url("pvb", new)).close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(env.role_url("pvb", old)).close()


BAD = {
    "finess_key": (f"finess;name\n{F1};CH A\n{F2[:8]}{(int(F2[8]) + 1) % 10};CH B\n", {},
                   [":3:", "wrong check key", repr(F2)]),
    "malformed_line": (f"finess;name;finess_ej\n{F1};CH A\n{F2};CH B;{EJ};extra;fields\n", {},
                       [":3:", "5 fields, the header has 3"]),
    "no_header": (f"{F1};CH A\n", {}, [":1:", "no header line"]),
    "bad_status": (f"finess;name;status\n{F1};CH A;actif\n", {}, [":2:", "status 'actif'"]),
    "twice": (f"finess;name\n{F1};CH A\n{F1};CH A bis\n", {}, [":3:", "already on line 2"]),
    "timezone": (None, {"tz": "Europe/Nowhere"}, ["unknown time zone 'Europe/Nowhere'"]),
    "timezone_typo": (None, {"tz": "America/Cayene"}, ["did you mean America/Cayenne"]),
    "code": (None, {"code": "Pv-c"}, ["code 'Pv-c'"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_and_nothing_is_created(env, capsys, case):
    csv_text, kw, expected = BAD[case]
    extra = ["--establishments", str(env.csv(csv_text))] if csv_text else []
    code = kw.pop("code", "pvc")
    rc, out, err = env.region_add(capsys, code, *extra, **kw)
    assert rc == 2, (out, err)
    assert "nothing was changed" in err
    for text in expected:
        assert text in err, err
    assert not env.regions.exists() or not list(env.regions.iterdir())
    assert not env.dags.exists() or not list(env.dags.iterdir())
    assert not env.database_exists("rpu_pvc") and env.role("rpu_pvc") is None
    assert env.tree() == set()


def test_a_rerun_adds_new_establishments_and_refuses_changed_ones(env, capsys):
    rc, _, err = env.region_add(capsys, "pvd", "--establishments", str(env.csv(THREE)), db=False)
    assert rc == 0, err
    rc, out, err = env.region_add(capsys, "pvd", "--establishments", str(env.csv(THREE + f"{F4};CH Neuf;;;\n")),
                                  db=False)
    assert rc == 0, err
    assert f"added {F4}" in out and "4 created, 12 already there" in out
    assert [e.finess for e in load_region(env.regions / "pvd.yaml").establishments] == [F1, F2, F3, F4]
    text = (env.regions / "pvd.yaml").read_bytes()
    changed = env.csv(f"finess;name\n{F1};CH de Lyon\n", "changed.csv")
    rc, out, err = env.region_add(capsys, "pvd", "--establishments", str(changed), db=False)
    assert rc == 2 and f"{changed}:2: establishment {F1} is already declared with other data" in err
    assert "'CH de Lyonville' in the file, 'CH de Lyon' given" in err and "--update" in err
    assert (env.regions / "pvd.yaml").read_bytes() == text


def test_duplicate_code_of_another_region_is_refused(env, capsys):
    rc, _, err = env.region_add(capsys, "pvd", "--establishments", str(env.csv(THREE)), name="Guyane", db=False,
                                sftp=False, tz="America/Cayenne")
    assert rc == 0, err
    text = (env.regions / "pvd.yaml").read_bytes()
    rc, out, err = env.region_add(capsys, "pvd", name="Martinique", tz="America/Martinique")
    assert rc == 2
    assert "duplicate code" in err and "'Guyane'" in err and "America/Cayenne" in err
    assert (env.regions / "pvd.yaml").read_bytes() == text
    assert not env.database_exists("rpu_pvd") and env.role("rpu_pvd") is None and env.tree() == set()


def test_sftp_host_key_is_mandatory_and_checked(env, capsys):
    no_key = f"sftp://{env.admin}@127.0.0.1:{env.sftp.port}/"
    rc, _, err = env.region_add(capsys, "pve", "--sftp-admin", no_key, sftp=False)
    assert rc == 2 and "host key must be pinned" in err
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4Ow7oQ2m6n2ZXk0Y0S3bS8vY0a3Y5mS9o1wq2m2Q7Z"
    wrong = f"{no_key}?host_key={quote(other, safe='')}"
    rc, _, err = env.region_add(capsys, "pve", "--sftp-admin", wrong, sftp=False)
    assert rc == 1 and "NOT the pinned one" in err
    assert not env.database_exists("rpu_pve") and not (env.regions / "pve.yaml").exists() and env.tree() == set()


def test_sftp_admin_by_fingerprint_and_base_directory(env, capsys):
    import base64
    import hashlib

    blob = base64.b64decode(env.sftp.host_key_public.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    url = f"sftp://{env.admin}@127.0.0.1:{env.sftp.port}/srv/rpu?host_key={quote(fingerprint, safe='')}"
    rc, out, err = env.region_add(capsys, "pve", "--establishments", str(env.csv(f"finess;name\n{F4};CH D\n")),
                                  "--sftp-admin", url, db=False, sftp=False)
    assert rc == 0, err
    assert env.tree() == {"srv", "srv/rpu", f"srv/rpu/{F4}"} | {f"srv/rpu/{F4}/{k}" for k in KINDS}


def test_sftp_admin_as_an_airflow_connection(env, capsys, monkeypatch):
    # Airflow reads its configuration once, at import: a throw-away home for the session unless one is set
    # already (tests/dags/conftest.py does the same), never ~/airflow
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="rpu-test-airflow-"))
    conn = json.loads(env.sftp.airflow_conn_json(env.admin, ADMIN_PW))
    conn["extra"]["base_dir"] = "intake"
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_SFTP_ADMIN", json.dumps(conn))
    rc, out, err = env.region_add(capsys, "pve", "--establishments", str(env.csv(f"finess;name\n{F4};CH D\n")),
                                  "--sftp-admin", "rpu_test_sftp_admin", db=False, sftp=False)
    assert rc == 0, err
    assert f"intake/{F4}/inbox" in env.tree()
    conn["extra"]["host_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4Ow7oQ2m6n2ZXk0Y0S3bS8vY0a3Y5mS9o1wq2m2Q7Z"
    conn["extra"]["no_host_key_check"] = "true"        # overridden: the key is verified anyway
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_SFTP_ADMIN", json.dumps(conn))
    rc, out, err = env.etab_add(capsys, "pve", "--finess", F3, "--name", "CH E", "--sftp-admin",
                                "rpu_test_sftp_admin", sftp=False)
    assert rc == 1 and "NOT the pinned one" in err, (out, err)
    assert F3 not in (env.regions / "pve.yaml").read_text()
    rc, out, err = env.etab_add(capsys, "pve", "--finess", F3, "--name", "CH E", "--sftp-admin", "no_such_conn",
                                sftp=False)
    assert rc == 2 and "no_such_conn" in err and "nothing was changed" in err


# --- establishment add --------------------------------------------------------------------------------------

def test_establishment_add_shadow_in_a_transition_region_idempotent(env, capsys):
    rc, _, err = env.region_add(capsys, "pvf", "--old-concentrator", db=False)
    assert rc == 0, err
    path = env.regions / "pvf.yaml"
    assert load_region(path).old_concentrator

    rc, out, err = env.etab_add(capsys, "pvf", "--finess", F1, "--name", "CH de Lyonville", "--finess-ej", EJ)
    assert rc == 0, err
    [e] = load_region(path).establishments
    assert (e.finess, e.status, e.finess_ej) == (F1, "shadow", EJ)
    assert env.tree() == {F1} | {f"{F1}/{k}" for k in KINDS}
    text = path.read_bytes()

    rc, out, err = env.etab_add(capsys, "pvf", "--finess", F1, "--name", "CH de Lyonville", "--finess-ej", EJ)
    assert rc == 0 and "unchanged" in out and path.read_bytes() == text

    rc, out, err = env.etab_add(capsys, "pvf", "--finess", F1, "--name", "CH de Lyon-Ville")
    assert rc == 2 and "already declared with other data" in err and "--update" in err
    assert path.read_bytes() == text

    rc, out, err = env.etab_add(capsys, "pvf", "--finess", F1, "--name", "CH de Lyon-Ville", "--status", "active",
                                "--update")
    assert rc == 0, err
    [e] = load_region(path).establishments
    assert (e.name, e.status, e.finess_ej) == ("CH de Lyon-Ville", "active", EJ)

    rc, _, _ = env.etab_add(capsys, "pvf", "--finess", F2, "--name", "CH B", "--status", "active")
    assert rc == 0 and load_region(path).establishment(F2).status == "active"


@pytest.mark.parametrize("argv,expected", [
    (["--region", "pvf", "--finess", F2[:8] + str((int(F2[8]) + 3) % 10), "--name", "X"], "wrong check key"),
    (["--region", "pvf", "--finess", "12345", "--name", "X"], "is not a FINESS number"),
    (["--region", "pvf", "--finess", F2, "--name", "X", "--contact", "nobody"], "not an e-mail"),
    (["--region", "pvf", "--finess", F2, "--name", "X", "--finess-ej", F1], "equal"),
    (["--region", "nowhere", "--finess", F2, "--name", "X"], "unknown region 'nowhere'"),
])
def test_establishment_add_refuses_bad_input(env, capsys, argv, expected):
    rc, _, err = env.region_add(capsys, "pvf", "--establishments", str(env.csv(f"finess;name\n{F1};CH A\n")),
                                db=False, sftp=False)
    assert rc == 0, err
    text = (env.regions / "pvf.yaml").read_bytes()
    rc, out, err = env.etab_add(capsys, argv[1], *argv[2:])
    assert rc == 2 and "nothing was changed" in err
    if expected == "equal":    # an EJ number that is the ET number of another establishment of the region
        assert "EJ number cannot also be an ET number" in err
    else:
        assert expected in err, err
    assert (env.regions / "pvf.yaml").read_bytes() == text and env.tree() == set()


def test_establishment_add_keeps_comments_and_layout_of_a_hand_written_file(env, capsys):
    env.regions.mkdir()
    original = (PROJECT / "config" / "regions" / "demo.yaml").read_text(encoding="utf-8")
    (env.regions / "demo.yaml").write_text(original, encoding="utf-8")
    rc, out, err = env.etab_add(capsys, "demo", "--finess", F4, "--name", "CH Neuf", "--contact", "dsi@neuf.example",
                                sftp=False)
    assert rc == 0, err
    new = (env.regions / "demo.yaml").read_text(encoding="utf-8")
    assert new.startswith(original)       # comments, order, quoting, flow lists: untouched; the entry appended
    assert new[len(original):] == (f'  - finess: "{F4}"\n    name: "CH Neuf"\n    status: active\n'
                                   f'    contact: "dsi@neuf.example"\n')
    assert load_region(env.regions / "demo.yaml").establishment(F4).contact == "dsi@neuf.example"


# --- Airflow connections ------------------------------------------------------------------------------------

# An `airflow` that records each command line it is given, and the permissions of the files it names, before
# running the real one (rpu.provision.connections runs $RPU_AIRFLOW_CMD).
RECORDING_AIRFLOW = """#!/bin/sh
{{ printf 'ARGV %s\\n' "$*"
  for a in "$@"; do
    if [ -f "$a" ]; then echo "FILE $(stat -c %a "$a") $(stat -c %a "$(dirname "$a")") $(wc -c < "$a") $a"; fi
  done; }} >> {log}
exec {python} -m airflow "$@"
"""


@pytest.mark.slow
def test_create_connections(env, capsys, monkeypatch):
    """`--create-connections` imports the complete connection (the database's, with the fresh password) from a
    file only its owner may read, deleted afterwards — no password on any command line —, prints the others,
    creates the pools, leaves an existing connection alone on a rerun and replaces it when the password rotates."""
    # a throw-away Airflow for the `airflow` subprocesses (they inherit os.environ)
    monkeypatch.setenv("AIRFLOW_HOME", str(env.tmp / "airflow"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    for k in [k for k in os.environ if k.startswith("AIRFLOW_CONN_") or k.startswith("AIRFLOW__DATABASE__")]:
        monkeypatch.delenv(k)
    airflow_env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   env=airflow_env, timeout=300)
    log, fake = env.tmp / "airflow-argv.log", env.tmp / "airflow-recording"
    fake.write_text(RECORDING_AIRFLOW.format(log=shlex.quote(str(log)), python=shlex.quote(sys.executable)))
    fake.chmod(0o755)
    monkeypatch.setenv("RPU_AIRFLOW_CMD", str(fake))

    def airflow_json(*args):
        got = subprocess.run([sys.executable, "-m", "airflow", *args, "-o", "json"], capture_output=True, text=True,
                             env=airflow_env, timeout=120)
        return json.loads(got.stdout[got.stdout.find("["):])

    rc, out, err = env.region_add(capsys, "pvb", "--create-connections", sftp=False)
    assert rc == 0, err
    assert "rpu_pvb_db: created" in out
    [password] = re.findall(r"password of role rpu_pvb \(shown once[^)]*\): (\S+)", out)
    assert out.count(password) == 1
    assert "airflow connections add rpu_pvb_sftp_intake" in out     # placeholders: printed, not created
    [conn] = airflow_json("connections", "get", "rpu_pvb_db")
    assert (conn["login"], conn["password"], conn["schema"]) == ("rpu_pvb", password, "rpu_pvb")
    psycopg.connect(env.role_url("pvb", password)).close()
    pools = {p["pool"]: int(p["slots"]) for p in airflow_json("pools", "list")}
    assert pools["rpu_db_pvb"] == 4 and {"rpu_gx_gate", "rpu_sftp_invs", "rpu_sftp_atih", "rpu_sftp_ars"} <= set(pools)

    recorded = log.read_text()
    commands = [line for line in recorded.splitlines() if line.startswith("ARGV ")]
    assert password not in recorded and not any("connections add" in c for c in commands), recorded
    [imported] = [c for c in commands if c.startswith("ARGV connections import --overwrite ")]
    path = imported.split()[-1]
    [(mode, dir_mode, size)] = [line.split()[1:4] for line in recorded.splitlines()
                                if line.startswith("FILE ") and line.endswith(" " + path)]
    assert (mode, dir_mode) == ("600", "700") and int(size) > len(password)
    assert not Path(path).exists() and not Path(path).parent.exists()     # deleted once imported

    rc, out, err = env.region_add(capsys, "pvb", "--create-connections", sftp=False)
    assert rc == 0, err
    assert "rpu_pvb_db: exists, left alone" in out

    log.write_text("")
    rc, out, err = env.region_add(capsys, "pvb", "--create-connections", "--rotate-password", sftp=False)
    assert rc == 0, err
    [new] = re.findall(r"password of role rpu_pvb \(shown once[^)]*\): (\S+)", out)
    assert new != password and "rpu_pvb_db: replaced (new password)" in out
    assert airflow_json("connections", "get", "rpu_pvb_db")[0]["password"] == new
    assert new not in log.read_text() and "connections import --overwrite" in log.read_text()


def test_region_add_needs_the_ars_address_once_an_establishment_is_active(env, capsys):
    """The same-day missing-transmission alert must reach the ARS: a region with an active establishment and no
    ARS address is refused, unless --ars-none says so on purpose; the addresses land in alerts."""
    etabs = str(env.csv(f"finess;name\n{F1};CH A\n"))
    rc, _, err = env.region_add(capsys, "pvg", "--establishments", etabs, "--no-ars", db=False, sftp=False)
    assert rc == 2 and "alerts.ars" in err and "--ars-email" in err and "--ars-none" in err
    assert not (env.regions / "pvg.yaml").exists()
    rc, _, err = env.region_add(capsys, "pvg", "--establishments", etabs, "--ars-none", db=False, sftp=False)
    assert rc == 0, err
    assert load_region(env.regions / "pvg.yaml").ars_none
    rc, _, err = env.region_add(capsys, "pvh", "--establishments", etabs, "--ars-email", "veille@ars.example.org",
                                "--ops-email", "exploit@example.org", db=False, sftp=False)
    assert rc == 0, err
    r = load_region(env.regions / "pvh.yaml")
    assert (r.ars_emails, r.ops_emails, r.ars_none) == (("veille@ars.example.org",), ("exploit@example.org",), False)
