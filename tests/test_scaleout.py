"""A real scale-out: Airflow on the CeleryExecutor (Redis broker), two Celery workers each with its own local
disk and one shared storage (RPU_STORAGE_URL, a bucket of a real S3-compatible server). The region's intake then its InVS send run through the
scheduler; one worker is killed with SIGKILL in the middle of a send, after the file was uploaded and before
the upload was recorded (the test holds that ledger row's lock meanwhile), and a replacement worker joins.
Every file must be loaded once, archived once in the shared storage, sent once (one file per send on the
recipient's SFTP account) and with the sha256 recorded at the first try."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from rpu_dev.localservices import free_port

from support.scaleout import REGION_CODE, ScaleOut, descendants

SEND_DAG = f"{REGION_CODE}_send_invs"
KILL_TIMEOUT = 120.0


def _trigger(so: ScaleOut, dag_id: str) -> str:
    assert so.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})[0] == 200
    status, body = so.api("POST", f"/dags/{dag_id}/dagRuns", {
        "logical_date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "note": "test_scaleout"})
    assert status in (200, 201), body
    return body["dag_run_id"]


def _wait_run(so: ScaleOut, dag_id: str, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        so.check_services()
        status, body = so.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        if status == 401:
            so.login()
            continue
        if status == 200 and body.get("state") in ("success", "failed"):
            return body["state"]
        time.sleep(2)
    raise AssertionError(f"{dag_id} {run_id} not done after {timeout:.0f} s")


def _wait_idle(so: ScaleOut, dag_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = so.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")
        if status == 200 and not [r for r in body["dag_runs"] if r["state"] in ("queued", "running")]:
            return
        time.sleep(2)
    raise AssertionError(f"runs of {dag_id} still active after {timeout:.0f} s")


def _task_instances(so: ScaleOut, dag_id: str, run_id: str) -> list[dict]:
    status, body = so.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
    assert status == 200, body
    return body["task_instances"]


def _socket_owner(port: int) -> int | None:
    """The local process owning the TCP socket bound to `port` on this machine (/proc/net/tcp, then fds)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            for line in fh.readlines()[1:]:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{f[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def _hold_a_send_between_upload_and_record(so: ScaleOut, run_id: str):
    """Lock the ledger row of a send of `run_id` as soon as it is prepared (its task then blocks when it
    records the upload), wait until its file is on the recipient's account and its task waits for the lock;
    returns (connection holding the lock, ledger row, pid of the blocked task process)."""
    conn = psycopg.connect(so.db_url)
    received = so.recipient_dirs["invs"]
    deadline = time.monotonic() + KILL_TIMEOUT
    while time.monotonic() < deadline:
        row = conn.execute("SELECT id, file_name, sha256, attempts, prepared_at FROM send_ledger WHERE run_id = %s "
                           "AND status = 'prepared' LIMIT 1 FOR UPDATE SKIP LOCKED", (run_id,)).fetchone()
        if row is None:
            conn.rollback()
            time.sleep(0.02)
            continue
        ledger = dict(zip(("id", "file_name", "sha256", "attempts", "prepared_at"), row))
        until = time.monotonic() + 20
        blocked = None
        while time.monotonic() < until and blocked is None:
            blocked = conn.execute(
                "SELECT client_port FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            ).fetchone()
            if blocked is None:
                time.sleep(0.05)
        if blocked is not None and (received / ledger["file_name"]).exists():
            pid = _socket_owner(blocked[0])
            if pid is not None:
                return conn, ledger, pid
        conn.rollback()   # that one got away (or its upload failed): try the next send
    conn.close()
    raise AssertionError("no send caught between its upload and its record")


@pytest.mark.slow
def test_celery_workers_share_the_storage_and_a_killed_worker_loses_no_file():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run scripts/setup (installs Debian's redis-server)")
    # not pytest's tmp_path: PostgreSQL runs as `postgres` when we are root and must traverse the workdir
    workdir = Path(tempfile.mkdtemp(prefix="rpu-scaleout-test-"))
    os.chmod(workdir, 0o755)
    so = ScaleOut(workdir, port=free_port(), days=1)
    try:
        so.start()

        # the intake, through the scheduler, on both workers
        run = _trigger(so, f"{REGION_CODE}_intake")
        assert _wait_run(so, f"{REGION_CODE}_intake", run, 240) == "success"
        if so.inbox_count():   # files uploaded while the run listed the inboxes: the next run takes them
            run = _trigger(so, f"{REGION_CODE}_intake")
            assert _wait_run(so, f"{REGION_CODE}_intake", run, 240) == "success"
        assert so.inbox_count() == 0
        with psycopg.connect(so.db_url) as conn:
            loaded = conn.execute("SELECT file_name, sha256, status, archive_path FROM received_file").fetchall()
        assert len(loaded) == len(so.uploaded)                                      # each file once
        assert len({(n, s) for n, s, _, _ in loaded}) == len(loaded)
        assert "duplicate" not in {st for _, _, st, _ in loaded}
        assert all(a.startswith(f"{so.shared}/archive/{REGION_CODE}/") for _, _, _, a in loaded)
        archived = so.shared_objects("archive")
        assert len(archived) == len(so.uploaded)                                   # archived once, shared
        assert {hashlib.sha256(b).hexdigest() for b in archived.values()} == {s for _, s, _, _ in loaded}
        for name in ("worker-1", "worker-2"):
            assert not (workdir / name / "data" / "archive").exists()           # nothing on a worker's disk

        # the InVS send: one worker killed between an upload and its record, a replacement joins
        run = _trigger(so, SEND_DAG)
        conn, held, task_pid = _hold_a_send_between_upload_and_record(so, run)
        victim = so.worker_of(task_pid)
        assert victim is not None, f"task process {task_pid} under no worker"
        [ti] = [t for t in _task_instances(so, SEND_DAG, run) if t["task_id"] == "send" and t["state"] == "running"
                and t["pid"] and task_pid in descendants(t["pid"])]
        first_sent = (so.recipient_dirs["invs"] / held["file_name"]).read_bytes()
        assert hashlib.sha256(first_sent).hexdigest() == held["sha256"]
        so.kill_worker(victim)
        conn.rollback()
        conn.close()
        so.start_worker("worker-3")
        assert _wait_run(so, SEND_DAG, run, 240) == "success"
        _wait_idle(so, SEND_DAG, 120)   # unpausing also started the run of the latest schedule tick

        # Both runs send: the triggered one and the latest schedule tick's. Their periods, hence file names, differ
        # when the tick is of an earlier day than the trigger (before 05:30 in Paris); after it, both send the same
        # period, and the second one's file replaces the first one's on the recipient's server.
        with psycopg.connect(so.db_url) as conn:
            ledger = conn.execute("SELECT id, file_name, sha256, status, attempts, run_id FROM send_ledger"
                                  ).fetchall()
            [prepared_at] = conn.execute("SELECT prepared_at FROM send_ledger WHERE id = %s", (held["id"],)).fetchone()
        assert ledger and all(st == "sent" for _, _, _, st, _, _ in ledger)
        per_run: dict[str, list[str]] = {}
        for _, name, _, _, _, run_id in ledger:
            per_run.setdefault(run_id, []).append(name)
        assert all(len(names) == len(set(names)) for names in per_run.values())   # each send once in its run
        received = sorted(p.name for p in so.recipient_dirs["invs"].rglob("*") if p.is_file())
        assert received == sorted({f for _, f, _, _, _, _ in ledger})
        for name in received:                          # the file there is one of the sends of that name, whole
            disk = hashlib.sha256((so.recipient_dirs["invs"] / name).read_bytes()).hexdigest()
            assert disk in {sha for _, f, sha, _, _, _ in ledger if f == name}, name
        ledger = [row[:5] for row in ledger]
        [(_, _, sha, _, attempts)] = [r for r in ledger if r[0] == held["id"]]
        assert sha == held["sha256"] and attempts > held["attempts"]              # same bytes, on a retry
        assert prepared_at == held["prepared_at"]                                  # not built again
        outbox = so.shared_objects("outbox", REGION_CODE)                        # built once, in the shared storage
        assert held["sha256"] in {hashlib.sha256(b).hexdigest() for b in outbox.values()}
        [again] = [t for t in _task_instances(so, SEND_DAG, run) if t["map_index"] == ti["map_index"]
                   and t["task_id"] == "send"]
        assert again["try_number"] > ti["try_number"]
        logs = {n: (so.logs / f"{n}.log").read_text(errors="replace") for n in ("worker-1", "worker-2")}
        assert all("execute_workload" in text for text in logs.values()), "a worker ran no task"
    except BaseException:
        for name in ("scheduler", "worker-1", "worker-2", "worker-3"):
            log = so.logs / f"{name}.log"
            if log.exists():
                print(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        for log in sorted(workdir.rglob("attempt=*.log")):       # the task logs of tries that failed
            text = log.read_text(errors="replace")
            if '"level":"error"' in text or "Traceback" in text:
                print(f"--- {log}\n" + "\n".join(text.splitlines()[-30:]))
        raise
    finally:
        clean = so.stop()
        if clean:
            shutil.rmtree(workdir, ignore_errors=True)
    assert clean, f"processes left after the test (see {workdir})"
