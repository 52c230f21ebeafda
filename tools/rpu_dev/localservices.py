"""Real local services (PostgreSQL, SFTP, SMTP, an S3-compatible store) for the demo and the test suite.

Nothing here is a mock: PostgreSQL is the Debian server binary, SFTP is an asyncssh server
speaking the real protocol, SMTP is an aiosmtpd server, S3 is moto's standalone server answering the
S3 REST protocol over HTTP in a process of its own. Everything listens on 127.0.0.1 only.
This module must stay importable without Airflow.
"""

from __future__ import annotations

import asyncio
import atexit
import email.policy
import glob
import hmac
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
ANCESTORS_FILE = "opened-ancestors.json"   # in a PostgresServer's base_dir: the o+x it granted, to take back

__all__ = [
    "LOCALHOST",
    "PostgresServer",
    "ReceivedMail",
    "S3Server",
    "SftpServer",
    "SmtpSink",
    "find_postgres_bindir",
    "free_port",
]


def _quiet(logger_name: str) -> None:
    """Drop a chatty library logger to WARNING unless the application configured it already."""
    logger = logging.getLogger(logger_name)
    if logger.level == logging.NOTSET:
        # asyncssh and aiosmtpd log every connection/command at INFO, drowning test failure output.
        logger.setLevel(logging.WARNING)


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that is free on `host` right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _ServiceMixin:
    """Context-manager and at-exit plumbing shared by the three services."""

    _atexit_cb: Callable[[], None] | None = None

    def start(self) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _arm_atexit(self) -> None:
        self._disarm_atexit()
        owner = os.getpid()

        def cleanup() -> None:
            # Forked children (executor workers, task runners) inherit atexit hooks; only the
            # process that started the service may stop it.
            if os.getpid() != owner:
                return
            try:
                self.stop()
            except Exception:  # noqa: BLE001 - last-chance cleanup must not raise at exit
                log.exception("could not stop %s at exit", type(self).__name__)

        self._atexit_cb = cleanup
        atexit.register(cleanup)

    def _disarm_atexit(self) -> None:
        if self._atexit_cb is not None:
            atexit.unregister(self._atexit_cb)
            self._atexit_cb = None


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_postgres_bindir() -> Path:
    """Return the directory holding initdb/pg_ctl/postgres (highest Debian version first)."""
    candidates = [
        p for p in glob.glob("/usr/lib/postgresql/*/bin") if os.access(os.path.join(p, "pg_ctl"), os.X_OK)
    ]
    if candidates:
        return Path(max(candidates, key=_version_key))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            bindir = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            bindir = ""
        # Debian's /usr/bin/pg_config can come from libpq-dev alone, without any server binaries.
        if bindir and os.access(os.path.join(bindir, "pg_ctl"), os.X_OK):
            return Path(bindir)
    # Otherwise a PyPI-packaged server: the `pgserver` wheel ships relocatable PostgreSQL binaries
    # (scripts/setup installs it when the Debian binaries are missing and apt cannot be used).
    try:
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        bindir = Path(spec.origin).parent / "pginstall" / "bin"
        if os.access(bindir / "pg_ctl", os.X_OK):
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin, via "
        "`pg_config --bindir`, nor in the `pgserver` package; run scripts/setup, or install them with "
        "`apt-get install postgresql`."
    )


# Linux limits sun_path to 108 bytes including the terminating NUL.
_MAX_UNIX_SOCKET_PATH = 107


class PostgresServer(_ServiceMixin):
    """A throw-away PostgreSQL cluster listening on 127.0.0.1 with trust auth for user postgres."""

    superuser = "postgres"

    def __init__(self, base_dir: Path, port: int | None = None, *, fast: bool = True) -> None:
        """Prepare (but do not start) a cluster whose data lives in `base_dir`/data."""
        self.base_dir = Path(base_dir).absolute()
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "postgresql.log"
        self.fast = fast
        self._requested_port = port
        self.port: int | None = port
        self.host = LOCALHOST
        self._bindir: Path | None = None
        self._as_root = os.geteuid() == 0
        self._running = False
        self._lock = threading.RLock()

    # -- public API --------------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        """Directory of the PostgreSQL binaries in use."""
        if self._bindir is None:
            self._bindir = find_postgres_bindir()
        return self._bindir

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._running

    @property
    def pid(self) -> int | None:
        """PID of the postmaster, read from postmaster.pid (None when not running)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        # postmaster.pid survives a crash; a dead pid is no pid.
        return pid if _pid_alive(pid) else None

    def url(self, dbname: str = "postgres") -> str:
        """libpq URL of `dbname` on this server: postgresql://postgres@127.0.0.1:PORT/DBNAME."""
        if self.port is None:
            raise RuntimeError("PostgresServer has no port yet; call start() first")
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def start(self) -> Self:
        """initdb if needed, then start the postmaster and wait until it accepts connections."""
        with self._lock:
            if self._running:
                return self
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            # A port picked by us can be stolen between free_port() and bind(); retry in that case.
            attempts = 1 if self._requested_port is not None else 3
            for attempt in range(1, attempts + 1):
                self.port = self._requested_port or free_port()
                self._write_runtime_conf()
                log_offset = self.log_file.stat().st_size
                # Registered before starting so an interpreter exit mid-start still cleans up.
                self._arm_atexit()
                try:
                    self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), timeout=90)
                except RuntimeError:
                    self._kill_leftovers()
                    port_taken = "could not bind" in self._log_since(log_offset)
                    if attempt == attempts or not port_taken:
                        self._disarm_atexit()
                        raise
                    log.warning("port %s was taken before postgres bound it; retrying", self.port)
                    continue
                break
            self._running = True
            log.info("postgres %s started on %s:%s (pid %s)", self.bindir, self.host, self.port, self.pid)
            return self

    def stop(self) -> None:
        """Stop the postmaster (fast shutdown) and make sure no postgres process survives."""
        with self._lock:
            self._disarm_atexit()
            pid = self.pid
            if self.data_dir.exists() and pid is not None:
                try:
                    self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", timeout=45)
                except RuntimeError:
                    log.warning("pg_ctl stop -m fast failed; escalating", exc_info=True)
                    try:
                        self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "10", timeout=20)
                    except RuntimeError:
                        log.warning("pg_ctl stop -m immediate failed; killing", exc_info=True)
                self._kill_leftovers(pid)
                _wait_reaped(pid, timeout=5)
            self._running = False
            if self._as_root and self.base_dir.exists():
                self._close_ancestors()

    def create_database(self, name: str) -> str:
        """Create database `name` if it does not exist yet and return its URL."""
        import psycopg
        from psycopg import errors, sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                try:
                    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
                    conn.execute(create)
                except errors.DuplicateDatabase:
                    pass  # created concurrently by someone else: idempotence still holds
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, terminating any session still connected to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            # FORCE so that a test leaking a connection cannot make teardown hang or fail.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- internals ---------------------------------------------------------------------------

    def _pg_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.superuser)
        except KeyError as exc:
            raise RuntimeError(
                "Running as root, but there is no 'postgres' system user to run PostgreSQL as; "
                "install it with `apt-get install postgresql`."
            ) from exc

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        if not self._as_root:
            return
        if shutil.which("runuser") is None:
            raise RuntimeError("Running as root needs `runuser` (util-linux) to drop to the postgres user")
        user = self._pg_user()
        # PostgreSQL insists on owning its data dir with mode 0700.
        os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        os.chmod(self.data_dir, 0o700)
        os.chown(self.log_file, user.pw_uid, user.pw_gid)
        # The postgres user must be able to traverse every ancestor (mkdtemp dirs are 0700);
        # granting search (x) only, never read, keeps directory listings private. What is granted outside
        # base_dir is recorded (ANCESTORS_FILE, in base_dir: a later process stopping this server, e.g. the demo
        # after a SIGKILLed run, finds it) and taken back by stop().
        if not (self.base_dir.stat().st_mode & stat.S_IXOTH):
            os.chmod(self.base_dir, stat.S_IMODE(self.base_dir.stat().st_mode) | stat.S_IXOTH)
        opened = self._opened_ancestors()
        for directory in self.base_dir.parents:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                opened.setdefault(str(directory), stat.S_IMODE(mode))
                self._write_opened(opened)           # written before the change: a crash leaves it known
                os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)

    def _opened_ancestors(self) -> dict[str, int]:
        """{ancestor of base_dir: its mode before we granted o+x} (ANCESTORS_FILE)."""
        try:
            return {str(k): int(v) for k, v in json.loads((self.base_dir / ANCESTORS_FILE).read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _write_opened(self, opened: dict[str, int]) -> None:
        path = self.base_dir / ANCESTORS_FILE
        if opened:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(opened, indent=1))
            tmp.replace(path)
        else:
            path.unlink(missing_ok=True)

    def _close_ancestors(self) -> None:
        """Take back the o+x granted on base_dir's ancestors, each unless another live PostgreSQL of ours still
        has its data under it (servers started side by side share ancestors), and only if nobody changed its
        mode meanwhile."""
        opened = self._opened_ancestors()
        if not opened:
            return
        others = [d for d in _postmaster_data_dirs() if d != self.data_dir.resolve()]
        for directory, mode in sorted(opened.items(), key=lambda kv: -len(kv[0])):
            path = Path(directory)
            if any(path in d.parents for d in others):
                continue                      # still needed by another server: its stop() takes it back
            try:
                now = stat.S_IMODE(path.stat().st_mode)
                if now == mode | stat.S_IXOTH:
                    os.chmod(path, mode)
            except FileNotFoundError:
                pass
            del opened[directory]
        self._write_opened(opened)

    def _command(self, program: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / program), *args]
        if self._as_root:
            return ["runuser", "-u", self.superuser, "--", *cmd]
        return cmd

    def _run(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            result = subprocess.run(
                cmd,
                cwd=self.base_dir,  # the caller's cwd (e.g. /root) may be unreadable for postgres
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout}s\n{self._log_tail()}") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed with exit code {result.returncode}\n"
                f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}\n"
                f"server log tail:\n{self._log_tail()}"
            )
        return result

    def _initdb(self) -> None:
        args = [
            "-D", str(self.data_dir),
            "--auth=trust",
            "-U", self.superuser,
            "--encoding=UTF8",
            "--locale=C",
        ]  # fmt: skip
        if self.fast:
            args.append("--no-sync")
        self._run(self._command("initdb", *args), timeout=180)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write("\n# Added by rpu_dev.localservices; the included file is rewritten at every start.\n")
            fh.write("include_if_exists = 'localservices.conf'\n")

    def _write_runtime_conf(self) -> None:
        socket_path = f"{self.data_dir}/.s.PGSQL.{self.port}"
        # TCP is what clients use; the socket is only a convenience and must not break deep dirs.
        socket_dir = str(self.data_dir) if len(socket_path) <= _MAX_UNIX_SOCKET_PATH else ""
        settings: dict[str, str] = {
            "listen_addresses": LOCALHOST,
            "port": str(self.port),
            "unix_socket_directories": socket_dir,
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        if self.fast:
            # Durability is irrelevant for throw-away test clusters; speed is not.
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        else:
            settings.update(fsync="on", synchronous_commit="on", full_page_writes="on")
        lines = [f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in settings.items()]
        target = self.data_dir / "localservices.conf"
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self._as_root:
            user = self._pg_user()
            os.chown(target, user.pw_uid, user.pw_gid)

    def _pg_ctl(self, action: str, *args: str, timeout: float) -> None:
        self._run(self._command("pg_ctl", action, "-D", str(self.data_dir), *args), timeout=timeout)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _kill_leftovers(self, pid: int | None = None) -> None:
        pid = pid or self.pid
        if pid is None or not _pid_is_postgres(pid):
            return
        # pg_ctl starts the postmaster with setsid(), so its process group holds every backend.
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_reaped(pid: int, timeout: float) -> None:
    """Wait until `pid` has left the process table, not merely exited.

    The daemonised postmaster is re-parented to PID 1, which may reap it a moment later; waiting
    keeps `ps` clean once stop() returns. A lingering zombie holds no resources, so no error.
    """
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)


def _postmaster_data_dirs() -> list[Path]:
    """The data directories of the PostgreSQL servers running on this machine (`postgres -D DIR`)."""
    dirs = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"postgres" in argv[0] and b"-D" in argv[:-1]:
            try:
                dirs.append(Path(os.fsdecode(argv[argv.index(b"-D") + 1])).resolve())
            except (OSError, ValueError):
                pass
    return dirs


def _pid_is_postgres(pid: int) -> bool:
    """Guard against signalling an unrelated process that reused a stale postmaster.pid value."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return b"postgres" in argv0 and _pid_alive(pid)


# --------------------------------------------------------------------------------------------
# SFTP
# --------------------------------------------------------------------------------------------


class SftpServer(_ServiceMixin):
    """An in-process asyncssh SFTP server with password accounts, each chrooted to its own dir."""

    def __init__(self, root: Path, port: int | None = None, *, host: str = LOCALHOST) -> None:
        """Prepare a server; `root` is a convenient parent for user chroots (created if missing)."""
        import asyncssh

        _quiet("asyncssh")
        self.root = Path(root).absolute()
        self.host = host
        self._requested_port = port
        self._port: int | None = port
        # One key per server object, kept across pause/resume/restart so clients can pin it.
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._users: dict[str, tuple[str, Path]] = {}
        self._users_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: Any = None
        self._connections: set[Any] = set()
        self._lock = threading.RLock()

    # -- public API --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """TCP port the server listens on (fixed at first start, reused by resume())."""
        if self._port is None:
            raise RuntimeError("SftpServer has no port yet; call start() first")
        return self._port

    @property
    def host_key_public(self) -> str:
        """Public host key as `ssh-ed25519 AAAA...` (no comment), the form Airflow's host_key extra wants."""
        exported = self._host_key.export_public_key("openssh").decode("ascii").split()
        return f"{exported[0]} {exported[1]}"

    def known_hosts_line(self) -> str:
        """known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`."""
        return f"[{self.host}]:{self.port} {self.host_key_public}"

    @property
    def listening(self) -> bool:
        """True when the server currently accepts new connections (started and not paused)."""
        return self._acceptor is not None

    def add_user(self, username: str, password: str, chroot: Path) -> Path:
        """Add or replace an account confined to `chroot` (created if missing); returns the chroot."""
        chroot = Path(chroot).absolute()
        chroot.mkdir(parents=True, exist_ok=True)
        with self._users_lock:
            self._users[username] = (password, chroot)
        return chroot

    def remove_user(self, username: str) -> None:
        """Remove an account; sessions already open are left alone."""
        with self._users_lock:
            self._users.pop(username, None)

    def start(self) -> Self:
        """Start the event-loop thread and begin listening."""
        with self._lock:
            if self._loop is not None:
                return self
            self.root.mkdir(parents=True, exist_ok=True)
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=self._run_loop, args=(loop, ready), name="sftp-server", daemon=True
            )
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            try:
                self._call(self._listen())
            except BaseException:
                self._shutdown_loop()
                raise
            self._arm_atexit()
            log.info("sftp server listening on %s:%s", self.host, self._port)
            return self

    def stop(self) -> None:
        """Close the listener and every session, then stop the event-loop thread."""
        with self._lock:
            self._disarm_atexit()
            if self._loop is None:
                return
            try:
                self._call(self._close(drop_sessions=True))
            finally:
                self._shutdown_loop()

    def pause(self, drop_sessions: bool = True) -> None:
        """Simulate an outage: stop listening (and by default cut open sessions) until resume()."""
        with self._lock:
            if self._loop is None:
                raise RuntimeError("SftpServer is not started")
            self._call(self._close(drop_sessions=drop_sessions))

    def resume(self) -> None:
        """Listen again on the same port with the same host key."""
        with self._lock:
            if self._loop is None:
                raise RuntimeError("SftpServer is not started")
            if self._acceptor is None:
                self._call(self._listen())

    def airflow_conn_extra(self) -> dict[str, str]:
        """Extras for an Airflow sftp/ssh connection: pinned host key, no local key probing."""
        # `host_key` is read by SSHHook as "<type> <base64>" and makes it reject any other key.
        # `look_for_keys` stops paramiko from offering ~/.ssh keys before the password.
        return {"host_key": self.host_key_public, "look_for_keys": "false"}

    def airflow_conn_uri(self, username: str, password: str) -> str:
        """Airflow connection URI (conn type sftp) for this server, host key pinned in the extras."""
        auth = f"{quote(username, safe='')}:{quote(password, safe='')}"
        # quote (not quote_plus): '+' and '/' in the base64 key must survive parse_qsl intact.
        query = urlencode(self.airflow_conn_extra(), quote_via=quote)
        return f"sftp://{auth}@{self.host}:{self.port}/?{query}"

    def airflow_conn_json(self, username: str, password: str) -> str:
        """Airflow connection JSON (conn type sftp) for this server, for AIRFLOW_CONN_* variables."""
        return json.dumps(
            {
                "conn_type": "sftp",
                "host": self.host,
                "port": self.port,
                "login": username,
                "password": password,
                "extra": self.airflow_conn_extra(),
            }
        )

    # -- internals (event-loop side) ---------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call(self, coro: Any, timeout: float = 30) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        self._acceptor = None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=30)

    async def _listen(self) -> None:
        import asyncssh

        server = self

        class _Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                self._conn = conn
                server._connections.add(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                server._connections.discard(self._conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                with server._users_lock:
                    account = server._users.get(username)
                if account is None:
                    # Still compare, so unknown users cost the same time as wrong passwords.
                    hmac.compare_digest(password.encode(), b"\0" * len(password.encode()))
                    return False
                return hmac.compare_digest(password.encode(), account[0].encode())

        def sftp_factory(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
            username = chan.get_extra_info("username")
            with server._users_lock:
                account = server._users.get(username)
            if account is None:  # user removed between auth and subsystem start
                raise asyncssh.PermissionDenied("account removed")
            return asyncssh.SFTPServer(chan, chroot=os.fsencode(account[1]))

        self._acceptor = await asyncssh.listen(
            self.host,
            self._port or 0,
            server_host_keys=[self._host_key],
            server_factory=_Server,
            sftp_factory=sftp_factory,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            reuse_address=True,
        )
        self._port = self._acceptor.get_port()

    async def _close(self, drop_sessions: bool) -> None:
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
        if drop_sessions:
            conns = list(self._connections)
            for conn in conns:
                conn.close()
            if conns:
                await asyncio.wait([asyncio.ensure_future(conn.wait_closed()) for conn in conns], timeout=10)
        if acceptor is not None and drop_sessions:
            # From Python 3.12 this waits for open sessions too, hence only once they are gone.
            await asyncio.wait_for(acceptor.wait_closed(), timeout=10)


# --------------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One message captured by SmtpSink, with its SMTP envelope."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    auth_login: str | None = None
    raw: bytes = b""
    received_at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        """Decoded Subject header ('' when absent)."""
        return str(self.message.get("Subject", ""))

    def body_text(self) -> str:
        """Text of the preferred plain (else html) body part ('' when there is none)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


class _CaptureHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    # The name is aiosmtpd's hook name, hence not snake_case.
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list) -> str:
        refusal = self._sink._refusal(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    # The name is aiosmtpd's hook name, hence not snake_case.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # SMTP carries CRLF; the email package models lines with "\n", so parse the normalised
        # form (bodies then compare naturally) and keep the wire bytes in `raw`.
        message = BytesParser(policy=email.policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        login = getattr(session.auth_data, "login", None) if session.authenticated else None
        self._sink._add(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,  # type: ignore[arg-type]  # policy.default yields EmailMessage
                auth_login=login.decode("utf-8", "replace") if isinstance(login, bytes) else login,
                raw=raw,
            )
        )
        return "250 Message accepted for delivery"


def _accept_any_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True, auth_data=auth_data)


class SmtpSink(_ServiceMixin):
    """An SMTP server on 127.0.0.1 that accepts and keeps every message it receives."""

    def __init__(self, port: int | None = None, *, host: str = LOCALHOST) -> None:
        """Prepare a sink; AUTH (any login) is offered without TLS so credentialed clients work too."""
        _quiet("mail.log")
        self.host = host
        self._requested_port = port
        self._port: int | None = port
        self._messages: list[ReceivedMail] = []
        self._cond = threading.Condition()
        self._controller: Any = None
        self._refusals: dict[str, str] = {}

    @property
    def port(self) -> int:
        """TCP port the sink listens on."""
        if self._port is None:
            raise RuntimeError("SmtpSink has no port yet; call start() first")
        return self._port

    @property
    def messages(self) -> list[ReceivedMail]:
        """Snapshot of the mails received so far, oldest first."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        """Forget every captured mail (and every refusal set by refuse())."""
        with self._cond:
            self._messages.clear()
            self._refusals.clear()

    def refuse(self, address: str, code: int = 550, message: str = "5.1.1 No such user") -> None:
        """Refuse RCPT TO `address` with `code` (4xx: for now, 5xx: for good) until accept() — as a real mail
        server refuses a mailbox, the other recipients of the same mail being accepted."""
        with self._cond:
            self._refusals[address.lower()] = f"{code} {message}"

    def accept(self, address: str) -> None:
        """Accept `address` again."""
        with self._cond:
            self._refusals.pop(address.lower(), None)

    def _refusal(self, address: str) -> str | None:
        with self._cond:
            return self._refusals.get(address.lower())

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until at least `count` mails were captured, then return them (TimeoutError otherwise)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} mail(s) within {timeout}s, got {len(self._messages)}")
            return list(self._messages)

    def start(self) -> Self:
        """Start the aiosmtpd controller thread."""
        from aiosmtpd.controller import Controller

        if self._controller is not None:
            return self
        # Controller cannot report an OS-chosen port (it probes the port it was given), so pick one.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(self.host)
            controller = Controller(
                _CaptureHandler(self),
                hostname=self.host,
                port=port,
                enable_SMTPUTF8=True,
                authenticator=_accept_any_login,
                auth_require_tls=False,
                auth_required=False,
            )
            try:
                controller.start()
            except Exception:
                if attempt == attempts:
                    raise
                continue
            self._controller, self._port = controller, port
            break
        self._arm_atexit()
        log.info("smtp sink listening on %s:%s", self.host, self._port)
        return self

    def stop(self) -> None:
        """Stop the controller thread (captured mails are kept)."""
        self._disarm_atexit()
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def airflow_conn_json(self, from_email: str = "rpu-concentrator@localhost") -> str:
        """Airflow connection JSON (conn type smtp) for this sink: plain SMTP, no SSL, no STARTTLS."""
        # SmtpHook tests these extras with bool(), so they must be JSON booleans, not strings.
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": self.host,
                "port": self.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": from_email, "timeout": 10},
            }
        )

    def _add(self, mail: ReceivedMail) -> None:
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()


# --------------------------------------------------------------------------------------------
# S3-compatible object store
# --------------------------------------------------------------------------------------------


class S3Server(_ServiceMixin):
    """An S3-compatible object store on 127.0.0.1: moto's standalone server (`python -m moto.server`), a
    process of its own answering the S3 REST protocol over HTTP, objects in its memory (gone at stop). The
    shared storage's tests reach it as a deployment reaches MinIO: Airflow's ObjectStoragePath, the Amazon
    provider's S3 file system (s3fs, botocore), an `aws` connection with an endpoint URL."""

    ACCESS_KEY = "rpu-test"
    SECRET_KEY = "rpu-test-secret-key"          # the local test server's own, accepted whatever it is
    REGION = "eu-west-3"

    def __init__(self, log_file: Path | None = None, *, host: str = LOCALHOST) -> None:
        self.host = host
        self.port: int | None = None
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("S3Server has no port yet; call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        import sys
        import urllib.error
        import urllib.request

        if self.proc is not None:
            return self
        self.port = free_port(self.host)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if self.log_file:
                out.close()
        self._arm_atexit()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited ({self.proc.returncode}); see {self.log_file}")
            try:
                with urllib.request.urlopen(self.endpoint_url, timeout=1):   # ListBuckets
                    log.info("S3 server listening on %s", self.endpoint_url)
                    return self
            except urllib.error.HTTPError:
                return self          # answering (an error status is an answer)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the S3 server is not answering on {self.endpoint_url}")

    def stop(self) -> None:
        self._disarm_atexit()
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def client(self):
        """A boto3 S3 client on this server (to create buckets and look at what was stored)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.REGION,
                            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.REGION})
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """{key: bytes} of every object under `prefix` of `bucket`."""
        s3 = self.client()
        out: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        return out

    def airflow_conn_json(self) -> str:
        """Airflow connection JSON (conn type aws) for this server: keys as login and password, the endpoint
        URL and region in the extras (what `rpu_storage` holds for a MinIO)."""
        return json.dumps({"conn_type": "aws", "login": self.ACCESS_KEY, "password": self.SECRET_KEY,
                           "extra": {"endpoint_url": self.endpoint_url, "region_name": self.REGION}})
