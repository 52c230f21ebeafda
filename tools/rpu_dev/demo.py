"""`python -m rpu_dev.demo`: the whole concentrator on this machine, with real services, in a few minutes.

What it does, in order:

1. In a work directory (default `var/demo`, wiped at start) it starts a local PostgreSQL server holding the
   regional database `rpu_demo` (migrated), an SFTP server with one account per demo establishment (chrooted
   to its own directory) plus the concentrator's account (sees every establishment), and an SMTP sink.
2. It writes an Airflow home there (SQLite metadata, LocalExecutor, simple auth manager with a known admin
   password, the connections as `AIRFLOW_CONN_*` variables, the SFTP host key pinned) and migrates it.
3. It starts `airflow api-server`, `scheduler`, `dag-processor` and `triggerer`, each in its own process
   group, bound to 127.0.0.1.
4. It generates two weeks of synthetic daily files (one of them malformed on purpose) and uploads each file
   into its establishment's inbox through SFTP, as that establishment — what a hospital does.
5. It unpauses and triggers `demo_intake` through the REST API and waits for the run.
6. It prints what happened (counts, dates, FINESS and file names only — never patient data).
7. It runs the day's sends (`demo_send_invs`, `demo_export_ars`, `demo_send_atih`) to local InVS, ARS and ATIH
   SFTP accounts, then the ATIH side: `syrius_reception` takes the region's ATIH files from its drop directory on
   the "Syrius" account into a national database (`rpu_national`), and the national page and its reconciliation
   with the region's send ledger are printed.
8. The watch: one active establishment uploaded nothing on purpose; the region's watch cut-off is moved to the
   minute after the intake and `demo_watch` is triggered: its alert mail, captured by the SMTP sink, is printed.
9. A reprise of one establishment's last days to InVS, triggered through Airflow's REST API (`demo_reprise`),
   and its summary mail; then how to get in and where to look at each.

Everything it started is stopped on every exit path (Ctrl-C, SIGTERM, error, `--once`): SIGTERM to each
Airflow component (the api-server last), then to its process group, SIGKILL after a timeout, then a check that
no process of this demo is left (`pgrep -f WORKDIR`, and a marker in the environment of every process it ran).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from rpu.config import PROJECT_DIR, Region, load_region
from rpu_dev.localservices import PostgresServer, SftpServer, SmtpSink

REGION_CODE = "demo"
DAG_ID = f"{REGION_CODE}_intake"
DB_NAME = "rpu_demo"
NATIONAL_DB = "rpu_national"
SEND_DAGS = (f"{REGION_CODE}_send_invs", f"{REGION_CODE}_export_ars", f"{REGION_CODE}_send_atih")
RECEPTION_DAG = "syrius_reception"
RECIPIENT_USERS = {"invs": "invs", "ars": "ars", "atih": f"atih_{REGION_CODE}"}   # recipient → SFTP login
HOST = "127.0.0.1"
MARKER = ".rpu-demo"                       # a directory holding it may be wiped by the next demo
OWNER_FILE = ".rpu-demo-owner"             # pid and start time of the demo process using the directory
ENV_MARKER = "RPU_DEMO_WORKDIR"            # set in every Airflow process: finds their descendants
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN = "admin"
STOP_TIMEOUT = 15.0                         # graceful stop of each Airflow component
HEALTH_TIMEOUT = 240.0
DAG_PARSE_TIMEOUT = 240.0
RUN_TIMEOUT = 600.0                         # for all the files: this, or 12 s per file if longer
STALL_TIMEOUT = 420.0                       # no file done for that long: something is wrong, give up
MAX_RUNS = 3


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where to look."""


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(msg: str) -> None:
    say(f"==> {msg}")


# --------------------------------------------------------------------------------------------------
# processes

def _proc_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ancestors() -> set[int]:
    """This process and its ancestors (a wrapper such as `time` or `timeout` names the workdir too)."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def _has_env(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


def demo_processes(workdir: Path, pgroups: set[int] = frozenset()) -> list[int]:
    """Live (non-zombie) processes of this demo other than ourselves: in one of `pgroups`, or carrying the
    demo's environment marker (task runners move to their own process group), or naming the workdir on their
    command line (PostgreSQL)."""
    mine = _ancestors()
    needle = f"{ENV_MARKER}={workdir}".encode()
    found = []
    for pid in _proc_pids():
        if pid in mine:
            continue
        st = _proc_stat(pid)
        if st is None or st[0] == "Z":
            continue
        if st[1] in pgroups or _has_env(pid, needle):
            found.append(pid)
    return sorted(set(found) | set(pgrep_workdir(workdir)))


def pgrep_workdir(workdir: Path) -> list[int]:
    """`pgrep -f WORKDIR` (what an operator would run), without ourselves and our ancestors."""
    if shutil.which("pgrep") is None:
        return []
    out = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True, check=False).stdout
    mine = _ancestors()
    return [int(x) for x in out.split() if x.isdigit() and int(x) not in mine]


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd[:160]}"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a live process (field 22 of /proc/PID/stat): with the pid, who it is."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def write_owner(workdir: Path) -> None:
    """Record this demo process as the owner of `workdir` (OWNER_FILE: pid and start time)."""
    (workdir / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")


def owner_alive(workdir: Path) -> int | None:
    """The pid of the demo that owns `workdir` when it still runs (same pid, same start time), else None."""
    try:
        pid_text, started = (workdir / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and _start_time(pid) == started else None


def recover_killed_demo(workdir: Path) -> list[int]:
    """What a demo killed without its cleanup (SIGKILL, a closed terminal, an OOM kill) left running in
    `workdir` — its PostgreSQL, its Airflow components and their task runners — stopped, when the demo that
    started them is gone (its owner record names a dead process). A running demo is left alone: the caller then
    refuses to start. Returns the pids stopped."""
    if not (workdir / OWNER_FILE).exists() or owner_alive(workdir) is not None:
        return []
    left = demo_processes(workdir)
    if not left:
        return []
    say(f"    a previous demo in {workdir} was killed without stopping what it started: stopping "
        f"{len(left)} process(es) it left")
    pg = workdir / "postgres"
    if (pg / "data" / "postmaster.pid").exists():
        try:
            PostgresServer(pg, fast=False).stop()      # a clean shutdown, and the rights it granted taken back
        except Exception as exc:  # noqa: BLE001 - the signals below finish the job
            say(f"    its PostgreSQL did not stop cleanly ({exc}): killing it")
    needle = f"{ENV_MARKER}={workdir}".encode()

    def ours() -> list[int]:   # the demo's own processes only: not, say, a `less` of its logs in a terminal
        return [p for p in demo_processes(workdir) if _has_env(p, needle) or _is_postgres(p)]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = ours()
        for group in {st[1] for p in pids if (st := _proc_stat(p))} & set(pids):   # groups led by one of them
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (10 if sig == signal.SIGTERM else 5)
        while ours() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not ours():
            break
    return left


class Service:
    """One Airflow component: a subprocess leading its own process group, output in logs/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_file: Path):
        self.name = name
        self.log_file = log_file
        with open(log_file, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid   # == its process group id (start_new_session)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group_members(self) -> list[int]:
        return [pid for pid in _proc_pids() if (st := _proc_stat(pid)) and st[1] == self.pid and st[0] != "Z"]

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])


def _stop_wave(services: list[Service], timeout: float) -> None:
    def settled(s: Service) -> bool:
        return not s.alive() and not s.group_members()

    for s in services:
        if s.alive():
            s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(settled(s) for s in services):
        time.sleep(0.2)
    for s in services:
        if not settled(s):
            say(f"    {s.name} did not stop within {timeout:.0f} s: SIGTERM to its process group")
            s.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(settled(s) for s in services):
        time.sleep(0.2)
    for s in services:
        if not settled(s):
            say(f"    {s.name}: SIGKILL to its process group")
            s.signal_group(signal.SIGKILL)
        try:
            s.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def stop_services(services: list[Service], workdir: Path, timeout: float = STOP_TIMEOUT) -> list[int]:
    """Stop the Airflow components; returns the pids of the demo still alive afterwards (should be none).

    The api-server goes last: tasks still running when the scheduler is told to stop report their end
    through it (the scheduler waits for them). SIGTERM goes to each group leader first, for an orderly
    shutdown (a SIGTERM to the scheduler's whole group would also hit its LocalExecutor workers while they
    hold a queue lock); what is left after `timeout` gets SIGTERM as a group, then SIGKILL — Airflow 3.3's
    LocalExecutor sometimes never returns from its shutdown (one idle worker left waiting for its stop
    message), so the wait must be bounded. Task processes that moved to their own group are found by the
    demo's environment marker and killed last."""
    _stop_wave([s for s in services if s.name != "api-server"], timeout)
    _stop_wave([s for s in services if s.name == "api-server"], timeout)
    groups = {s.pid for s in services}
    for pid in [p for p in demo_processes(workdir, groups) if not _is_postgres(p)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    time.sleep(0.5)
    return [p for p in demo_processes(workdir, groups) if not _is_postgres(p)]


def _is_postgres(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# HTTP (Airflow REST API)

def http(method: str, url: str, body: dict | None = None, token: str | None = None,
         timeout: float = 30) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# --------------------------------------------------------------------------------------------------
# the demo

class Demo:
    def __init__(self, workdir: Path, *, port: int, days: int, once: bool):
        self.workdir = workdir
        self.port = port
        self.days = days
        self.once = once
        self.base_url = f"http://{HOST}:{port}"
        self.logs = workdir / "logs"
        self.pg = self.sftp = self.smtp = None
        self.services: list[Service] = []
        self.accounts: dict[str, str] = {}            # SFTP login → password
        self.admin_password = secrets.token_urlsafe(12)
        self.region: Region | None = None
        self.env: dict[str, str] = {}
        self.db_url = ""
        self.uploaded: list[tuple[str, str, str | None]] = []   # (finess, file name, injected error)
        self.run_ids: list[str] = []
        self.token: str | None = None
        self.national_url = ""
        self.silent: str | None = None                  # the establishment that sends nothing, on purpose
        self.recipient_dirs: dict[str, Path] = {}       # recipient → its SFTP account's home

    # -- 1. work directory and local services ----------------------------------------------------------

    def prepare_workdir(self) -> None:
        wd = self.workdir
        if wd.exists():
            if not wd.is_dir():
                raise DemoError(f"{wd} exists and is not a directory")
            if any(wd.iterdir()) and not (wd / MARKER).exists():
                raise DemoError(f"{wd} is not empty and was not made by the demo (no {MARKER} file): "
                                "refusing to wipe it; choose a new or empty --workdir")
            recover_killed_demo(wd)
            left = demo_processes(wd)
            if left:
                raise DemoError(f"processes of a previous demo still use {wd}:\n  "
                                + "\n  ".join(_describe(p) for p in left)
                                + "\nstop that demo first (Ctrl-C in its terminal)")
            for child in wd.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        wd.mkdir(parents=True, exist_ok=True)
        os.chmod(wd, 0o755)   # PostgreSQL runs as `postgres` when we are root: it must traverse the workdir
        (wd / MARKER).write_text("work directory of `python -m rpu_dev.demo`: wiped by the next demo run\n")
        write_owner(wd)
        self.logs.mkdir()

    def start_postgres(self) -> None:
        from rpu import store

        self.pg = PostgresServer(self.workdir / "postgres", fast=False)
        self.pg.start()
        self.db_url = self.pg.create_database(DB_NAME)
        applied = store.migrate(self.db_url)
        say(f"    PostgreSQL {self.pg.url(DB_NAME)} (migrations applied: {', '.join(applied) or 'none'})")
        from rpu.national import schema

        self.national_url = self.pg.create_database(NATIONAL_DB)
        applied = schema.migrate(self.national_url)
        say(f"    PostgreSQL {self.pg.url(NATIONAL_DB)}: the ATIH side's national database "
            f"(migrations applied: {', '.join(applied) or 'none'})")

    def load_demo_region(self) -> None:
        """Copy config/regions/demo.yaml into the workdir with a short stability wait (the demo's files are
        complete when the run starts) and a short retry delay."""
        src = PROJECT_DIR / "config" / "regions" / f"{REGION_CODE}.yaml"
        data = yaml.safe_load(src.read_text(encoding="utf-8"))
        data.setdefault("intake", {})["stable_seconds"] = 1
        data["retry_delay_minutes"] = 0.5
        # weekly ATIH files (1 January to last Sunday): the demo's few days of data always fall in a closed period
        data.setdefault("atih", {})["frequency"] = "weekly"
        regions = self.workdir / "regions"
        regions.mkdir()
        dst = regions / f"{REGION_CODE}.yaml"
        dst.write_text(f"# demo copy of {src} (intake.stable_seconds and retry_delay_minutes shortened, "
                       "weekly ATIH files)\n"
                       + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        self.region = load_region(dst)

    def start_sftp(self) -> None:
        root = self.workdir / "sftp"
        self.sftp = SftpServer(root)
        self.sftp.start()
        self.accounts["concentrator"] = secrets.token_urlsafe(12)
        self.sftp.add_user("concentrator", self.accounts["concentrator"], root)
        for est in self.region.establishments:
            self.accounts[est.finess] = secrets.token_urlsafe(12)
            chroot = self.sftp.add_user(est.finess, self.accounts[est.finess], root / est.finess)
            for kind in ("inbox", "archive", "rejected", "ack"):
                (chroot / kind).mkdir(exist_ok=True)
        # the recipients: InVS and the ARS each an account of their own; ATIH's "Syrius" server, where the
        # region's ATIH account has its home in the region's drop directory, and ATIH's reception account sees
        # every region's drop directory (rpu_syrius_sftp)
        syrius = self.workdir / "syrius"
        self.recipient_dirs = {"invs": self.workdir / "recipients" / "invs",
                               "ars": self.workdir / "recipients" / "ars", "atih": syrius / REGION_CODE}
        for recipient, user in RECIPIENT_USERS.items():
            self.accounts[user] = secrets.token_urlsafe(12)
            self.sftp.add_user(user, self.accounts[user], self.recipient_dirs[recipient])
        self.accounts["syrius"] = secrets.token_urlsafe(12)
        self.sftp.add_user("syrius", self.accounts["syrius"], syrius)
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.write_text(self.sftp.known_hosts_line() + "\n")
        accounts = self.workdir / "sftp-accounts.txt"
        accounts.write_text("".join(f"{u}\t{p}\n" for u, p in self.accounts.items()))
        accounts.chmod(0o600)
        say(f"    SFTP {HOST}:{self.sftp.port}, {len(self.accounts)} accounts, host key {self.sftp.host_key_public}")

    def start_smtp(self) -> None:
        self.smtp = SmtpSink()
        self.smtp.start()
        say(f"    SMTP sink {HOST}:{self.smtp.port}")

    # -- 2. Airflow home -------------------------------------------------------------------------------

    def sftp_conn_json(self, user: str = "concentrator") -> str:
        conn = json.loads(self.sftp.airflow_conn_json(user, self.accounts[user]))
        extra = conn.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        # the host key is pinned: the hook rejects any other key; checking is never turned off
        extra.pop("no_host_key_check", None)
        extra["host_key"] = self.sftp.host_key_public
        extra.setdefault("look_for_keys", "false")
        conn["extra"] = extra
        return json.dumps(conn)

    def write_airflow_home(self) -> None:
        from cryptography.fernet import Fernet

        home = self.workdir / "airflow"
        home.mkdir()
        passwords = home / "simple_auth_manager_passwords.json"
        # the simple auth manager generates a password only for users missing from this file: by writing it
        # first, the login is known (admin / the password printed at the end)
        passwords.write_text(json.dumps({ADMIN: self.admin_password}) + "\n")
        passwords.chmod(0o600)
        bindir = self.workdir / "bin"
        bindir.mkdir()
        # the Airflow processes are started through this link so that their command lines name the workdir
        # (`pgrep -f WORKDIR` lists everything the demo runs)
        (bindir / "airflow").symlink_to(self.airflow_script())
        data_dir = self.workdir / "data"
        data_dir.mkdir()
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("AIRFLOW", "RPU_", "PG")) and k != "PYTHONPATH"}
        settings = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_DIR / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # 8 worker processes are plenty (the intake runs 2 files at a time) and stop faster than 32
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # every component signs or checks the same JWTs (scheduler → task runners → api-server)
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW_CONN_RPU_DEMO_SFTP_INTAKE": self.sftp_conn_json(),
            "AIRFLOW_CONN_RPU_DEMO_DB": json.dumps({
                "conn_type": "postgres", "host": self.pg.host, "port": self.pg.port,
                "login": self.pg.superuser, "schema": DB_NAME}),
            "AIRFLOW_CONN_SMTP_DEFAULT": self.smtp.airflow_conn_json(),
            **{f"AIRFLOW_CONN_RPU_{REGION_CODE.upper()}_SFTP_{r.upper()}": self.sftp_conn_json(u)
               for r, u in RECIPIENT_USERS.items()},
            "AIRFLOW_CONN_RPU_SYRIUS_SFTP": self.sftp_conn_json("syrius"),
            "AIRFLOW_CONN_RPU_NATIONAL_DB": json.dumps({
                "conn_type": "postgres", "host": self.pg.host, "port": self.pg.port,
                "login": self.pg.superuser, "schema": NATIONAL_DB}),
            "RPU_DATA_DIR": str(data_dir),
            "RPU_REGIONS_DIR": str(self.workdir / "regions"),
            ENV_MARKER: str(self.workdir),
        }
        self.env = inherited | settings
        self.env["PATH"] = f"{bindir}{os.pathsep}{inherited.get('PATH', os.defpath)}"
        env_sh = self.workdir / "env.sh"
        # (without the process marker: a shell that sourced it is not a process of the demo, never to be killed)
        env_sh.write_text("# source this file to use the demo's Airflow CLI: `. env.sh; airflow dags list`\n"
                          + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items()
                                    if k != ENV_MARKER)
                          + f"export PATH={shlex.quote(str(bindir))}:\"$PATH\"\n")
        env_sh.chmod(0o600)

    def airflow_script(self) -> Path:
        script = Path(sys.executable).parent / "airflow"
        if not script.exists():
            raise DemoError(f"no `airflow` script next to {sys.executable}: is Airflow installed in this venv?")
        return script

    def airflow_cmd(self, *args: str) -> list[str]:
        return [str(self.workdir / "bin" / "airflow"), *args]

    def migrate_airflow(self) -> None:
        log = self.logs / "airflow-db-migrate.log"
        with open(log, "wb") as fh:
            rc = subprocess.run(self.airflow_cmd("db", "migrate"), env=self.env, cwd=self.workdir,
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=600, check=False).returncode
        if rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise DemoError(f"`airflow db migrate` failed (exit {rc}), see {log}:\n{tail}")
        # the pools the region's tasks take (rpu.pools): the scheduler does not start a task whose pool is missing
        log = self.logs / "rpu-pools-sync.log"
        with open(log, "wb") as fh:
            rc = subprocess.run([sys.executable, "-m", "rpu.cli", "pools", "sync"], env=self.env, cwd=self.workdir,
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=600, check=False).returncode
        if rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise DemoError(f"`rpu pools sync` failed (exit {rc}), see {log}:\n{tail}")

    # -- 3. Airflow components --------------------------------------------------------------------------

    def check_port(self) -> None:
        with socket.socket() as s:
            # as uvicorn binds: connections of a previous demo left in TIME_WAIT do not make the port busy
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, self.port))
            except OSError:
                raise DemoError(f"port {self.port} on {HOST} is already in use: choose another with --port")

    def start_airflow(self) -> None:
        for name in SERVICES:
            self.services.append(Service(name, self.airflow_cmd(name), self.env, self.workdir,
                                         self.logs / f"{name}.log"))
        say(f"    started {', '.join(f'{s.name} ({s.pid})' for s in self.services)}; logs in {self.logs}")

    def check_services(self) -> None:
        dead = [s for s in self.services if not s.alive()]
        if dead:
            s = dead[0]
            raise DemoError(f"airflow {s.name} exited (code {s.proc.returncode}); end of {s.log_file}:\n"
                            f"{s.log_tail()}")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            self.check_services()
            try:
                status, body = http("GET", f"{self.base_url}/api/v2/monitor/health", timeout=5)
            except OSError:
                status, body = None, None
            if status == 200 and isinstance(body, dict):
                states = {k: (v or {}).get("status") for k, v in body.items() if isinstance(v, dict)}
                last = states
                if all(states.get(k) == "healthy" for k in ("metadatabase", "scheduler", "dag_processor",
                                                             "triggerer")):
                    return
            time.sleep(2)
        raise DemoError(f"Airflow not healthy after {HEALTH_TIMEOUT:.0f} s (last health: {last}); "
                        f"see {self.logs}/api-server.log")

    def login(self) -> None:
        status, body = http("POST", f"{self.base_url}/auth/token",
                            {"username": ADMIN, "password": self.admin_password})
        if status not in (200, 201) or not isinstance(body, dict) or "access_token" not in body:
            raise DemoError(f"cannot log in to Airflow as {ADMIN}: HTTP {status} {body}")
        self.token = body["access_token"]

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        return http(method, f"{self.base_url}/api/v2{path}", body, self.token)

    def import_errors(self) -> list[dict]:
        status, body = self.api("GET", "/importErrors?limit=100")
        return body.get("import_errors", []) if status == 200 and isinstance(body, dict) else []

    def wait_dag(self) -> None:
        deadline = time.monotonic() + DAG_PARSE_TIMEOUT
        while time.monotonic() < deadline:
            self.check_services()
            status, _ = self.api("GET", f"/dags/{DAG_ID}")
            if status == 200:
                return
            for err in self.import_errors():
                # only the demo region's DAG file matters here (dags/region_demo.py)
                if Path(str(err.get("filename", ""))).stem in (f"region_{REGION_CODE}", REGION_CODE):
                    raise DemoError(f"the DAG file {err.get('filename')} does not import:\n"
                                    f"{str(err.get('stack_trace', ''))[-2000:]}")
            time.sleep(2)
        errors = "".join(f"\n  {e.get('filename')}: {str(e.get('stack_trace', '')).strip()[-400:]}"
                         for e in self.import_errors())
        raise DemoError(f"DAG {DAG_ID} not parsed after {DAG_PARSE_TIMEOUT:.0f} s; see "
                        f"{self.logs}/dag-processor.log" + (f"; import errors:{errors}" if errors else ""))

    # -- 4. synthetic files, uploaded as each hospital does ---------------------------------------------

    def generate_and_upload(self, tmp: Path) -> None:
        from rpu import synth

        today = datetime.now(self.region.tz).date()
        start = today - timedelta(days=self.days)
        kw = {"start": start, "days": self.days, "seed": 1, "errors": ("malformed",)}
        planned = synth.plan(self.region, **kw)
        paths = synth.generate(self.region, tmp, **kw)
        errors_by_path = {tmp / pf.relpath: pf.error for pf in planned}
        by_finess: dict[str, list[Path]] = {}
        for p in paths:
            by_finess.setdefault(p.parent.name, []).append(p)
        # one active establishment stays silent (not the one holding the malformed file): the watch tells it
        spoiled = {p.parent.name for p in paths if errors_by_path.get(p)}
        self.silent = [e.finess for e in self.region.active if e.finess not in spoiled][-1]
        by_finess.pop(self.silent, None)
        size = sum(p.stat().st_size for p in paths)
        say(f"    {len(paths)} files ({size / 1e6:.1f} MB), send days {start:%d/%m/%Y} – "
            f"{start + timedelta(days=self.days - 1):%d/%m/%Y}, {len(by_finess)} establishments")
        for finess, files in sorted(by_finess.items()):
            with self.sftp_session(finess) as sftp:
                for p in sorted(files, key=lambda x: x.name):   # the name carries EXTRACT: send order
                    tmp_name = f"inbox/{p.name}.part"        # hidden from the intake until renamed
                    sftp.put(str(p), tmp_name)
                    try:
                        sftp.posix_rename(tmp_name, f"inbox/{p.name}")
                    except OSError:
                        sftp.rename(tmp_name, f"inbox/{p.name}")
                    self.uploaded.append((finess, p.name, errors_by_path.get(p)))
        say(f"    uploaded {len(self.uploaded)} files through SFTP, each establishment with its own login; "
            f"{self.silent} ({self.region.establishment(self.silent).name}) sends nothing, on purpose")

    def sftp_session(self, user: str):
        import contextlib

        import paramiko

        @contextlib.contextmanager
        def session():
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())   # only the pinned key is trusted
            client.load_host_keys(str(self.known_hosts))
            client.connect(HOST, self.sftp.port, username=user, password=self.accounts[user],
                           look_for_keys=False, allow_agent=False, timeout=15, banner_timeout=15, auth_timeout=15)
            try:
                with client.open_sftp() as sftp:
                    yield sftp
            finally:
                client.close()

        return session()

    # -- 5. trigger and wait ----------------------------------------------------------------------------

    def inbox_count(self) -> int:
        root = self.workdir / "sftp"
        n = 0
        for est in self.region.establishments:
            inbox = root / self.region.remote_dir("inbox", est.finess)
            n += sum(1 for f in inbox.iterdir() if f.is_file() and not f.name.startswith(".")) \
                if inbox.is_dir() else 0
        return n

    def _run_timeout(self) -> float:
        return max(RUN_TIMEOUT, 12.0 * len(self.uploaded))

    def dag_runs(self) -> list[dict]:
        status, body = self.api("GET", f"/dags/{DAG_ID}/dagRuns?limit=100&order_by=run_after")
        if status == 401:       # token expired (long demo): log in again
            self.login()
            status, body = self.api("GET", f"/dags/{DAG_ID}/dagRuns?limit=100&order_by=run_after")
        if status != 200 or not isinstance(body, dict):
            raise DemoError(f"cannot list the runs of {DAG_ID}: HTTP {status} {body}")
        return body.get("dag_runs", [])

    def chunks_ingested_by(self, run_id: str) -> int:
        """The run's mapped `ingest` task instances that succeeded (each a chunk of files)."""
        status, body = self.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?task_id=ingest&limit=1000")
        if status != 200 or not isinstance(body, dict):
            return 0
        return sum(1 for ti in body.get("task_instances", [])
                   if ti.get("map_index", -1) >= 0 and ti.get("state") == "success")

    def troubled_tasks(self) -> list[str]:
        """Task instances of any run of the DAG that failed or wait for a retry (named by FINESS and file)."""
        status, body = self.api("GET", f"/dags/{DAG_ID}/dagRuns/~/taskInstances"
                                       "?state=failed&state=up_for_retry&limit=100")
        if status != 200 or not isinstance(body, dict):
            return []
        return [f"{ti.get('task_id')} {ti.get('rendered_map_index') or ''} ({ti.get('state')})".replace("  ", " ")
                for ti in body.get("task_instances", [])]

    def trigger_and_wait(self) -> None:
        status, body = self.api("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
        if status != 200:
            raise DemoError(f"cannot unpause {DAG_ID}: HTTP {status} {body}")
        deadline = time.monotonic() + self._run_timeout()
        for _attempt in range(MAX_RUNS):
            status, body = self.api("POST", f"/dags/{DAG_ID}/dagRuns",
                                    {"logical_date": None, "note": "triggered by rpu_dev.demo"})
            if status not in (200, 201) or not isinstance(body, dict):
                raise DemoError(f"cannot trigger {DAG_ID}: HTTP {status} {body}")
            run_id = body["dag_run_id"]
            self.run_ids.append(run_id)
            say(f"    triggered {run_id} ({self.inbox_count()} files waiting in the inboxes)")
            self.wait_run(run_id, deadline)
            if self.inbox_count() == 0:
                break
        else:
            raise DemoError(f"{self.inbox_count()} files still in the inboxes after {MAX_RUNS} runs; "
                            f"see the task logs in {self.workdir / 'airflow' / 'logs'}")
        say(f"    runs of {DAG_ID}:")
        for r in self.dag_runs():
            rid = r["dag_run_id"]
            why = ("triggered by the demo" if rid in self.run_ids else
                   f"the scheduler's own run: once unpaused, the DAG runs on '{self.region.intake.schedule}'")
            say(f"      {rid:42} {r.get('state') or '?':8} {self.chunks_ingested_by(rid):4d} chunk(s) of up to "
                f"{self.region.intake.chunk_files} files ingested  ({why})")

    def wait_run(self, run_id: str, deadline: float) -> None:
        """Wait until our run has finished and the inboxes are empty (or no run is left to empty them).

        Unpausing makes the scheduler start a run of the latest schedule tick too (max_active_runs=1 queues
        ours behind it): whichever run takes the files, the demo waits for the work, not for one run."""
        t0 = time.monotonic()
        last_print = last_progress = time.monotonic()
        last_left = None
        while True:
            self.check_services()
            runs = {r["dag_run_id"]: r.get("state") for r in self.dag_runs()}
            active = {rid: st for rid, st in runs.items() if st in ("queued", "running")}
            left = self.inbox_count()
            if runs.get(run_id) in ("success", "failed") and (left == 0 or not active):
                return
            if left != last_left:
                last_left, last_progress = left, time.monotonic()
            stalled = left > 0 and time.monotonic() - last_progress > STALL_TIMEOUT
            if time.monotonic() > deadline or stalled:
                troubled = self.troubled_tasks()
                why = (f"no file done for {STALL_TIMEOUT:.0f} s" if stalled
                       else f"not done after {self._run_timeout():.0f} s")
                raise DemoError(f"{left} files still in the inboxes, {why} (runs: {active or runs}); "
                                f"see {self.base_url}/dags/{DAG_ID}" + "".join(f"\n  {t}" for t in troubled[:10]))
            if time.monotonic() - last_print >= 20:
                last_print = time.monotonic()
                states = ", ".join(f"{rid} {st}" for rid, st in active.items()) or "no active run"
                troubled = self.troubled_tasks()
                trouble = f", {len(troubled)} task(s) failed or waiting to retry" if troubled else ""
                # a file leaves its inbox only once loaded, acknowledged and moved: that is "done"
                say(f"    … {len(self.uploaded) - left}/{len(self.uploaded)} files done, {states}{trouble} "
                    f"({time.monotonic() - t0:.0f} s)")
            time.sleep(3)

    def run_dag(self, dag_id: str, timeout: float = RUN_TIMEOUT, conf: dict | None = None) -> str:
        """Unpause `dag_id`, trigger it through the REST API, wait until none of its runs is queued or running;
        returns the state of ours. (Unpausing may start the scheduler's own run of the latest tick too.)"""
        deadline = time.monotonic() + DAG_PARSE_TIMEOUT
        while self.api("GET", f"/dags/{dag_id}")[0] != 200:
            self.check_services()
            if time.monotonic() > deadline:
                raise DemoError(f"DAG {dag_id} not parsed after {DAG_PARSE_TIMEOUT:.0f} s; see "
                                f"{self.logs}/dag-processor.log")
            time.sleep(2)
        status, body = self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        if status != 200:
            raise DemoError(f"cannot unpause {dag_id}: HTTP {status} {body}")
        # the sends and the watch take their period from the run's logical date: now
        status, body = self.api("POST", f"/dags/{dag_id}/dagRuns", {
            "logical_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": "triggered by rpu_dev.demo", **({"conf": conf} if conf else {})})
        if status not in (200, 201) or not isinstance(body, dict):
            raise DemoError(f"cannot trigger {dag_id}: HTTP {status} {body}")
        run_id = body["dag_run_id"]
        deadline = time.monotonic() + timeout
        while True:
            self.check_services()
            status, body = self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")
            if status == 401:
                self.login()
                continue
            runs = {r["dag_run_id"]: r.get("state") for r in (body or {}).get("dag_runs", [])} \
                if isinstance(body, dict) else {}
            if runs.get(run_id) in ("success", "failed") and not any(
                    st in ("queued", "running") for st in runs.values()):
                say(f"    {dag_id}: " + ", ".join(f"{rid} {st}" for rid, st in sorted(runs.items())))
                return runs[run_id]
            if time.monotonic() > deadline:
                raise DemoError(f"{dag_id} not done after {timeout:.0f} s (runs: {runs}); see "
                                f"{self.base_url}/dags/{dag_id}")
            time.sleep(3)

    # -- 7. the day's sends and the ATIH side -------------------------------------------------------------

    def recipient_files(self, recipient: str) -> list[Path]:
        """What a recipient's SFTP account holds (ATIH: what its reception archived or refused too)."""
        root = self.recipient_dirs[recipient]
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                      and "ack" not in p.relative_to(root).parts)

    def sends(self) -> bool:
        states = {dag_id: self.run_dag(dag_id) for dag_id in SEND_DAGS}
        say()
        say("What the recipients' SFTP accounts hold after the day's sends:")
        ok = all(st == "success" for st in states.values())
        for recipient, user in RECIPIENT_USERS.items():
            files = self.recipient_files(recipient)
            ok = ok and bool(files)
            say(f"  {recipient:5} account {user:10} {self.recipient_dirs[recipient]}: {len(files)} file(s)")
            for f in files[:4]:
                say(f"        {f.relative_to(self.recipient_dirs[recipient])}")
            if len(files) > 4:
                say(f"        … and {len(files) - 4} more")
        return ok

    def atih_side(self) -> bool:
        import psycopg
        from rpu.national import reconciliation, report, settings

        state = self.run_dag(RECEPTION_DAG)
        year = datetime.now(self.region.tz).year
        with psycopg.connect(self.national_url, connect_timeout=10) as conn:
            files = conn.execute("SELECT status, count(*) FROM national_file WHERE region = %s GROUP BY status",
                                 (REGION_CODE,)).fetchall()
            grid = report.grid(conn, year, [self.region])
        result = reconciliation.reconcile_urls(self.db_url, self.national_url, settings.load(), self.region, year)
        received = dict(files)
        say()
        say(f"What ATIH received (syrius_reception, national database {NATIONAL_DB}): "
            + (", ".join(f"{n} {st}" for st, n in sorted(received.items())) or "nothing"))
        say()
        say("The national page (rpu report national):")
        months = max([r["month"] for r in grid["rows"] if r["files"]] + [datetime.now(self.region.tz).month])
        for line in report.render(grid, "table", months=months).rstrip("\n").splitlines():
            say(f"  {line}")
        say()
        for line in reconciliation.render(result).rstrip("\n").splitlines():
            say(f"  {line}")
        statuses = [r["status"] for r in result["rows"]]
        return state == "success" and received.get("accepted", 0) > 0 and bool(statuses) and \
            all(s == "conforme" for s in statuses)

    # -- 8. the watch, 9. a reprise ----------------------------------------------------------------------

    def print_mails(self, mails, about: str) -> None:
        say(f"  {len(mails)} mail(s) captured by the SMTP sink ({about}):")
        for m in mails:
            say(f"  ┌ To: {', '.join(m.rcpt_tos)}")
            say(f"  │ Subject: {m.subject}")
            lines = [line for line in m.body_text().splitlines() if line.strip()]
            for line in lines[:14]:
                say(f"  │ {line[:150]}")
            if len(lines) > 14:
                say(f"  │ … ({len(lines) - 14} more lines)")
            say("  └")

    def watch(self) -> bool:
        """Move the watch's cut-off to the coming minute (after every reception of the demo), wait for it and run
        `demo_watch`: the silent establishment is the only active one with nothing received by the cut-off."""
        cut = (datetime.now(self.region.tz) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        path = self.workdir / "regions" / f"{REGION_CODE}.yaml"
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        data.setdefault("watch", {})["cutoff"] = f"{cut:%H:%M}"
        path.write_text(text.splitlines()[0] + f" (watch.cutoff {cut:%H:%M}: the minute after the intake)\n"
                        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        self.region = load_region(path)
        say(f"    watch cut-off set to {cut:%H:%M} ({self.region.timezone}); waiting for it")
        while datetime.now(self.region.tz) < cut + timedelta(seconds=2):
            time.sleep(1)
        before = len(self.smtp.messages)
        state = self.run_dag(f"{REGION_CODE}_watch")
        mails = self.smtp.messages[before:]
        say()
        self.print_mails(mails, f"the watch, {self.silent} silent on purpose")
        return state == "success" and any(self.silent in m.body_text() for m in mails)

    def reprise(self) -> bool:
        """A reprise of the last days of the first establishment, to InVS, triggered through the REST API."""
        finess = self.region.active[0].finess
        today = datetime.now(self.region.tz).date()
        conf = {"establishment": finess, "start_date": (today - timedelta(days=self.days + 7)).isoformat(),
                "end_date": (today - timedelta(days=1)).isoformat(), "recipients": ["invs"], "dry_run": False}
        say(f"    POST {self.base_url}/api/v2/dags/{REGION_CODE}_reprise/dagRuns conf={json.dumps(conf)}")
        before_files = len(self.recipient_files("invs"))
        before = len(self.smtp.messages)
        state = self.run_dag(f"{REGION_CODE}_reprise", conf=conf)
        mails = self.smtp.messages[before:]
        added = len(self.recipient_files("invs")) - before_files
        say(f"    reprise: {added} file(s) added to the InVS account")
        say()
        self.print_mails(mails, "the reprise's summary")
        return state == "success" and added > 0 and bool(mails)

    # -- 6. report --------------------------------------------------------------------------------------

    def report(self) -> bool:
        import psycopg

        with psycopg.connect(self.db_url, connect_timeout=10) as conn:
            files = {r[0]: r[1:] for r in conn.execute("""
                SELECT sender, count(*) FILTER (WHERE status = 'accepted'),
                       count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status = 'duplicate'),
                       coalesce(sum(visits_loaded) FILTER (WHERE status = 'accepted'), 0),
                       coalesce(sum(visits_flagged) FILTER (WHERE status = 'accepted'), 0)
                FROM received_file GROUP BY sender""")}
            stored = {r[0]: r[1:] for r in conn.execute(
                "SELECT etab, count(*), min(entry_date), max(entry_date) FROM visit GROUP BY etab")}
            rejected = conn.execute("""SELECT sender, file_name, errors FROM received_file
                                       WHERE status = 'rejected' ORDER BY id""").fetchall()
            status_of = dict(conn.execute("SELECT file_name, status FROM received_file ORDER BY id").fetchall())

        say()
        say("What the concentrator received (regional database, table received_file):")
        head = (f"  {'FINESS':9}  {'establishment':40} {'accepted':>8} {'rejected':>8} {'duplicate':>9} "
                f"{'visits loaded':>13} {'visits in base':>14}  entry dates in base")
        say(head)
        say("  " + "-" * (len(head) - 2))
        tot = [0, 0, 0, 0, 0]
        for est in self.region.establishments:
            acc, rej, dup, loaded, _flagged = files.get(est.finess, (0, 0, 0, 0, 0))
            n, dmin, dmax = stored.get(est.finess, (0, None, None))
            for i, v in enumerate((acc, rej, dup, loaded, n)):
                tot[i] += v
            days = f"{dmin:%d/%m/%Y} – {dmax:%d/%m/%Y}" if dmin else "—"
            name = est.name if len(est.name) <= 40 else est.name[:39] + "…"
            say(f"  {est.finess:9}  {name:40} {acc:8d} {rej:8d} {dup:9d} {loaded:13d} {n:14d}  {days}")
        say(f"  {'total':9}  {'':40} {tot[0]:8d} {tot[1]:8d} {tot[2]:9d} {tot[3]:13d} {tot[4]:14d}")
        say("  (visits loaded: summed over the accepted files, so a visit re-sent in several daily files of the "
            "7-day window counts once per file that replaced its day; visits in base: stored now, each once)")

        injected = {(f, n): e for f, n, e in self.uploaded if e}
        say()
        say(f"Rejected files ({len(rejected)}):")
        for sender, name, errors in rejected:
            first = (errors or [{}])[0]
            why = f"[{first.get('rule', '?')}]"
            if first.get("line"):
                why += f" line {first['line']}"
            msg = str(first.get("message", ""))
            if msg:
                why += f": {msg[:110]}"
            tag = f" ({injected[(sender, name)]} on purpose)" if (sender, name) in injected else ""
            say(f"  {sender}  {name}{tag}  rejected {why}")
        if not rejected:
            say("  none")

        self.print_receipts(rejected, status_of)

        malformed = [(f, n) for (f, n), e in injected.items() if e == "malformed"]
        malformed_ok = bool(malformed) and all(status_of.get(n) == "rejected" for _, n in malformed)
        accepted_ok = tot[0] > 0
        return malformed_ok and accepted_ok

    def print_receipts(self, rejected, status_of) -> None:
        """One receipt as the hospital reads it in its ack/ directory (through its own SFTP login)."""
        samples = []
        accepted = [(f, n) for f, n, e in self.uploaded if status_of.get(n) == "accepted"]
        if accepted:
            samples.append(accepted[-1])
        if rejected:
            samples.append((rejected[0][0].strip(), rejected[0][1]))
        for finess, name in samples:
            with self.sftp_session(finess) as sftp:
                try:
                    with sftp.open(f"ack/{name}.ack.txt") as fh:
                        text = fh.read().decode("utf-8", "replace")
                except OSError:
                    text = "(no receipt found)\n"
            say()
            say(f"Receipt {finess}/ack/{name}.ack.txt (as establishment {finess} sees it over SFTP):")
            for line in text.rstrip("\n").splitlines():
                say(f"  | {line}")

    def print_access(self) -> None:
        first = self.region.establishments[0].finess
        say()
        say("How to look around:")
        say(f"  Airflow      {self.base_url}   login {ADMIN} / password {self.admin_password}")
        say(f"               DAG {DAG_ID}: {self.base_url}/dags/{DAG_ID}")
        say(f"  SFTP         {HOST} port {self.sftp.port}, host key {self.sftp.host_key_public}")
        say(f"               establishment login {first} / password {self.accounts[first]}")
        say(f"               sftp -P {self.sftp.port} -o UserKnownHostsFile={self.known_hosts} {first}@{HOST}")
        say(f"               every account (concentrator + one per establishment): "
            f"{self.workdir / 'sftp-accounts.txt'}")
        say(f"               a file put into an inbox (sftp> put FILE inbox/) is taken by the next run of {DAG_ID} "
            f"('{self.region.intake.schedule}', or Trigger in the UI); the receipt appears in ack/")
        say(f"  PostgreSQL   {self.pg.url(DB_NAME)}")
        say(f"  sends        InVS {self.recipient_dirs['invs']}, ARS {self.recipient_dirs['ars']}, "
            f"ATIH {self.recipient_dirs['atih']} (SFTP logins in sftp-accounts.txt); "
            f"ledger: . {self.workdir / 'env.sh'}; rpu ledger --region {REGION_CODE} --db '{self.db_url}'")
        say(f"  ATIH side    national page {self.base_url}/rpu/national , region {self.base_url}/rpu/regions/"
            f"{REGION_CODE} (reconciliation, daily charts); DAG {self.base_url}/dags/{RECEPTION_DAG}")
        say(f"               rpu report national --db '{self.national_url}' --year {datetime.now(self.region.tz).year}")
        say(f"  SMTP sink    {HOST} port {self.smtp.port} ({len(self.smtp.messages)} mail(s) captured)")
        say(f"  Airflow CLI  . {self.workdir / 'env.sh'}; airflow dags list")
        say(f"  logs         {self.logs}")

    # -- run / stop -------------------------------------------------------------------------------------

    def run(self) -> int:
        t0 = time.monotonic()
        if (self.workdir / MARKER).exists():
            recover_killed_demo(self.workdir)   # before the port check: a killed demo's api-server holds it
        self.check_port()
        step(f"work directory {self.workdir}")
        self.prepare_workdir()
        self.load_demo_region()
        step("local services")
        self.start_postgres()
        self.start_sftp()
        self.start_smtp()
        step("Airflow home, metadata database")
        self.write_airflow_home()
        self.migrate_airflow()
        step("Airflow api-server, scheduler, dag-processor, triggerer")
        self.start_airflow()
        step("synthetic files, uploaded by each establishment through SFTP")
        tmp = self.workdir / "generated"
        self.generate_and_upload(tmp)
        step(f"waiting for Airflow on {self.base_url}")
        self.wait_healthy()
        self.login()
        self.wait_dag()
        step(f"unpausing and triggering {DAG_ID}")
        self.trigger_and_wait()
        ok = self.report()
        step("the day's sends: InVS, ARS, ATIH")
        sent = self.sends()
        step("the ATIH side: Syrius reception, national page, reconciliation")
        atih = self.atih_side()
        step(f"the watch, {self.silent} silent on purpose")
        watched = self.watch()
        step(f"a reprise through Airflow's REST API ({REGION_CODE}_reprise)")
        reprised = self.reprise()
        self.print_access()
        say()
        say(f"Intake {'OK' if ok else 'FAILED'}: at least one file accepted and the malformed file rejected")
        say(f"Sends {'OK' if sent else 'FAILED'}: every send succeeded and each recipient's account holds files")
        say(f"ATIH side {'OK' if atih else 'FAILED'}: the ATIH files received and every send reconciled "
            "(reçu, conforme)")
        say(f"Watch {'OK' if watched else 'FAILED'}: the silent establishment's alert mailed the same day")
        say(f"Reprise {'OK' if reprised else 'FAILED'}: the reprise sent its files and its summary mail")
        ok = ok and sent and atih and watched and reprised
        say(f"Demo {'OK' if ok else 'FAILED'}")
        say(f"({time.monotonic() - t0:.0f} s since start)")
        if self.once:
            return 0 if ok else 1
        say()
        say("Everything keeps running. Ctrl-C to stop.")
        while True:
            time.sleep(5)
            dead = [s for s in self.services if not s.alive()]
            if dead:
                raise DemoError(f"airflow {dead[0].name} stopped unexpectedly; see {dead[0].log_file}")

    def stop(self) -> bool:
        """Stop everything that was started, in reverse order; True when nothing of the demo is left."""
        clean = True
        if self.services:
            say("==> stopping Airflow")
            left = stop_services(self.services, self.workdir)
            if left:
                clean = False
                say("    still alive: " + "; ".join(_describe(p) for p in left))
        for name in ("smtp", "sftp", "pg"):
            svc = getattr(self, name)
            if svc is None:
                continue
            try:
                svc.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                clean = False
                say(f"    could not stop {type(svc).__name__}: {exc}")
        left = demo_processes(self.workdir)
        if left:
            clean = False
            say("    processes left: " + "; ".join(_describe(p) for p in left))
        else:
            say(f"==> stopped; no process left (pgrep -f {self.workdir})")
        return clean


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rpu_dev.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--once", action="store_true",
                   help="exit after the first report: 0 when every step worked (a file accepted and the malformed "
                        "one rejected, the sends, the ATIH side reconciled, the watch's alert, the reprise's mail)")
    p.add_argument("--days", type=int, default=14, help="send days of synthetic files (default 14)")
    p.add_argument("--port", type=int, default=8080, help="Airflow api-server port on 127.0.0.1 (default 8080)")
    p.add_argument("--workdir", type=Path, default=PROJECT_DIR / "var" / "demo",
                   help="work directory, wiped at start (default var/demo in the project)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.days < 1:
        print("rpu_dev.demo: --days must be >= 1", file=sys.stderr)
        return 2
    demo = Demo(args.workdir.absolute(), port=args.port, days=args.days, once=args.once)
    # Ctrl-C raises KeyboardInterrupt even when started in the background by a shell (which then ignores
    # SIGINT); SIGTERM and SIGHUP unwind the same way, so the finally block below always runs
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    rc = 1
    try:
        rc = demo.run()
    except KeyboardInterrupt:
        say()
        rc = 130
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except DemoError as exc:
        say(f"rpu_dev.demo: {exc}")
        rc = 1
    finally:
        # a second Ctrl-C must not interrupt the cleanup (each wait in it is bounded)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if not demo.stop() and rc == 0:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
