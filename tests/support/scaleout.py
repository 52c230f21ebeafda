"""The demo's system (tools/rpu_dev/demo.py: PostgreSQL, SFTP, SMTP, Airflow's api-server, scheduler,
dag-processor, triggerer) on the CeleryExecutor: a Redis broker (Debian's redis-server, started here on a free
port, no service), Airflow's metadata in PostgreSQL, and Celery workers each with its own local data
directory (RPU_DATA_DIR, HOME, TMPDIR: its "disk") and one shared storage (RPU_STORAGE_URL: a bucket of an
S3-compatible server, rpu_dev.localservices.S3Server, reached through ObjectStoragePath with the connection
rpu_storage, as workers on several hosts reach a MinIO). Every process is started in its own process group and
stopped by pid (the demo's stop), Redis and the S3 server last. Used by tests/test_scaleout.py."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml
from rpu.config import load_region
from rpu_dev.demo import HOST, REGION_CODE, Demo, DemoError, Service, _proc_pids, say
from rpu_dev.localservices import S3Server, free_port


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> set[int]:
    """`pid` and every live process below it (task runners leave the worker's process group)."""
    children: dict[int, list[int]] = {}
    for p in _proc_pids():
        parent = _parent(p)
        if parent is not None:
            children.setdefault(parent, []).append(p)
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, ()))
    return out


class RedisServer:
    """Debian's redis-server on a free port of 127.0.0.1, no persistence, in its own process group."""

    def __init__(self, directory: Path, log_file: Path):
        self.directory, self.log_file = directory, log_file
        self.port = free_port(HOST)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise DemoError("redis-server is not installed (scripts/setup installs Debian's package)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"redis-server exited ({self.proc.returncode}); see {self.log_file}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise DemoError(f"redis-server not answering on {self.port}; see {self.log_file}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class ScaleOut(Demo):
    """The demo's services on the CeleryExecutor with several workers and a shared storage."""

    def __init__(self, workdir: Path, *, port: int, days: int = 1):
        super().__init__(workdir, port=port, days=days, once=True)
        self.redis: RedisServer | None = None
        self.workers: dict[str, Service] = {}
        self.s3: S3Server | None = None
        self.bucket = "rpu-shared"
        self.shared = f"s3://{self.bucket}/concentrator"

    def load_demo_region(self) -> None:
        """The demo's region, with retries a few seconds apart (a killed task is retried at once)."""
        super().load_demo_region()
        path = self.region.source
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["retry_delay_minutes"] = 0.05
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        self.region = load_region(path)

    def start_redis(self) -> None:
        self.redis = RedisServer(self.workdir / "redis", self.logs / "redis.log")
        self.redis.start()
        say(f"    Redis {self.redis.url} (pid {self.redis.proc.pid})")

    def start_s3(self) -> None:
        self.s3 = S3Server(self.logs / "s3.log")
        self.s3.start()
        self.s3.create_bucket(self.bucket)
        say(f"    S3 server {self.s3.endpoint_url} (pid {self.s3.proc.pid}), shared storage {self.shared}")

    def shared_objects(self, *under: str) -> dict[str, bytes]:
        """{key: bytes} of what the shared storage holds under concentrator/<under…>/."""
        return self.s3.objects(self.bucket, "/".join(("concentrator", *under)) + "/")

    def write_airflow_home(self) -> None:
        super().write_airflow_home()
        metadata = self.pg.create_database("airflow").replace("postgresql://", "postgresql+psycopg://", 1)
        self.env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__CELERY__BROKER_URL": f"{self.redis.url}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"{self.redis.url}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            # a worker killed with its tasks: their instances are failed (then retried) after this silence
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "RPU_STORAGE_URL": self.shared,
            "AIRFLOW_CONN_RPU_STORAGE": self.s3.airflow_conn_json(),
        })

    def start_worker(self, name: str) -> Service:
        """An `airflow celery worker` with a local disk of its own (its data directory, HOME and TMPDIR)."""
        disk = self.workdir / name
        for sub in ("data", "home", "tmp"):
            (disk / sub).mkdir(parents=True, exist_ok=True)
        env = self.env | {"RPU_DATA_DIR": str(disk / "data"), "HOME": str(disk / "home"),
                          "TMPDIR": str(disk / "tmp")}
        worker = Service(name, self.airflow_cmd("celery", "worker", "--celery-hostname", f"{name}@%h",
                                                "--skip-serve-logs", "--pid", str(disk / "worker.pid"),
                                                "--without-gossip", "--without-mingle"),
                         env, self.workdir, self.logs / f"{name}.log")
        self.workers[name] = worker
        self.services.append(worker)
        say(f"    started Celery worker {name} (pid {worker.pid}), its disk {disk}")
        return worker

    def worker_of(self, pid: int) -> str | None:
        """The worker whose process tree holds `pid` (a task runner)."""
        for name, w in self.workers.items():
            if w.alive() and pid in descendants(w.pid):
                return name
        return None

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and everything below it at once, as a host that dies."""
        w = self.workers[name]
        tree = descendants(w.pid) | set(w.group_members())
        for pid in tree:
            try:
                os.kill(pid, signal.SIGSTOP)   # nothing forks or reacts meanwhile
            except ProcessLookupError:
                pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        w.proc.wait(timeout=10)
        self.services.remove(w)   # dead on purpose: not a failure of the system
        say(f"    killed worker {name} (SIGKILL to {len(tree)} processes)")

    def start(self) -> None:
        """Everything up to the parsed intake DAG, with two workers."""
        self.check_port()
        self.prepare_workdir()
        self.load_demo_region()
        self.start_postgres()
        self.start_sftp()
        self.start_smtp()
        self.start_redis()
        self.start_s3()
        self.write_airflow_home()
        self.migrate_airflow()
        self.start_airflow()
        for name in ("worker-1", "worker-2"):
            self.start_worker(name)
        self.generate_and_upload(self.workdir / "generated")
        self.wait_healthy()
        self.login()
        self.wait_dag()

    def stop(self) -> bool:
        clean = super().stop()
        for name, server in (("Redis", self.redis), ("the S3 server", self.s3)):
            if server is None:
                continue
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - reported, the rest is stopped
                clean = False
                say(f"    could not stop {name}: {exc}")
        return clean


__all__ = ["REGION_CODE", "ScaleOut", "descendants"]
