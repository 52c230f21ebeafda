"""The README's first command, end to end: `python -m rpu_dev.demo --once` with real PostgreSQL, SFTP, SMTP and
Airflow processes; it must report an accepted load and the rejected malformed file, the day's sends in the
recipients' SFTP accounts, the ATIH side (reception, national page, reconciliation), the watch's alert for the
establishment kept silent and the reprise's summary mail (both captured by the SMTP sink), then leave nothing
behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rpu_dev.localservices import free_port

PROJECT_DIR = Path(__file__).resolve().parents[1]
TIMEOUT = 20 * 60


def _leftovers(workdir: Path) -> list[str]:
    """Processes naming the workdir on their command line (pgrep -f), or carrying the demo's marker in their
    environment (Airflow task processes whose command line is rewritten)."""
    out = subprocess.run(["pgrep", "-af", str(workdir)], capture_output=True, text=True, check=False).stdout
    found = [line for line in out.splitlines() if line.strip()]
    needle = f"RPU_DEMO_WORKDIR={workdir}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != "Z":
            found.append(f"{pid} (environment of the demo)")
    return found


PLANT = """
import os, socket, subprocess, sys, time
from pathlib import Path
from rpu_dev import demo
from rpu_dev.localservices import PostgresServer
wd, port = Path(sys.argv[1]), int(sys.argv[2])
(wd / demo.MARKER).write_text("demo\\n")
demo.write_owner(wd)
PostgresServer(wd / "postgres", fast=True).start()
listener = ("import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(3600)")
env = dict(os.environ, **{demo.ENV_MARKER: str(wd)})
subprocess.Popen([sys.executable, "-c", listener], env=env, start_new_session=True)   # an 'api-server' on the port
time.sleep(1)
print("planted", flush=True)
time.sleep(3600)
"""


def _plant_killed_demo(workdir: Path, port: int) -> None:
    """What a demo SIGKILLed mid-run leaves: its owner record naming a dead process, its PostgreSQL running in
    the workdir, a process of its environment holding the api-server's port."""
    planter = subprocess.Popen([sys.executable, "-c", PLANT, str(workdir), str(port)], cwd=PROJECT_DIR,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert planter.stdout.readline().strip() == "planted"
    finally:
        planter.kill()                                   # SIGKILL: nothing of it stops what it started
        planter.wait()
    assert len(_leftovers(workdir)) >= 2                 # PostgreSQL and the port's holder outlive it


@pytest.mark.slow
def test_demo_once_runs_the_whole_system_and_cleans_up() -> None:
    """…after recovering by itself from an earlier demo SIGKILLed in the same workdir."""
    if shutil.which("pgrep") is None:
        pytest.skip("pgrep (procps) is needed to check that no process is left")
    # Not pytest's tmp_path: when root, PostgreSQL runs as `postgres`, which must traverse the workdir, and
    # pytest resets its base temp dir to 0700.
    workdir = Path(tempfile.mkdtemp(prefix="rpu-demo-test-"))
    os.chmod(workdir, 0o755)
    port = free_port()
    cmd = [sys.executable, "-m", "rpu_dev.demo", "--once", "--days", "3", "--workdir", str(workdir),
           "--port", str(port)]
    try:
        _plant_killed_demo(workdir, port)
        proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, stdin=subprocess.DEVNULL)
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGTERM lets the demo stop what it started (a SIGKILL would leak PostgreSQL and Airflow)
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            pytest.fail(f"the demo did not finish within {TIMEOUT} s:\n{out[-6000:]}")

        assert proc.returncode == 0, f"demo exited {proc.returncode}:\n{out[-6000:]}"
        assert f"http://127.0.0.1:{port}" in out, out[-6000:]
        assert "was killed without stopping what it started: stopping" in out, out[:3000]
        assert re.search(r"^.*malformed on purpose.*\brejected\b.*$", out, re.MULTILINE), out[-6000:]
        assert re.search(r"Demo OK", out) and "Intake OK" in out, out[-6000:]
        # the day's sends: files in the InVS, ARS and ATIH (Syrius drop directory, archived by the reception)
        # accounts
        for sub in ("recipients/invs", "recipients/ars", "syrius/demo/archive"):
            files = [p for p in (workdir / sub).rglob("*") if p.is_file()]
            assert files, f"nothing in {sub}:\n{out[-6000:]}"
        assert "Sends OK" in out and "ATIH side OK" in out, out[-6000:]
        # the national page and its reconciliation
        national = out[out.index("The national page"):]
        assert "Région de démonstration" in national and "Total général" in national, national[:3000]
        sent = re.findall(r"^\s+ATIH_\S+\.xml\s.*$", national.split("==> the watch")[0], re.MULTILINE)
        assert sent and all(line.endswith("✓ reçu, conforme") for line in sent), national[:3000]
        # the watch: the silent establishment's alert, mailed the same day and printed
        silent = re.search(r"(\d{9}) \(.*\) sends nothing, on purpose", out).group(1)
        watch = out[out.index(f"(the watch, {silent} silent on purpose)"):out.index("a reprise through")]
        assert re.search(r"^\s+[1-9]\d* mail\(s\) captured", out[out.index("==> the watch"):], re.MULTILINE)
        assert "Subject:" in watch and silent in watch.split("Subject:", 1)[1], watch
        assert "Watch OK" in out, out[-6000:]
        # the reprise, triggered through the REST API, and its summary mail
        reprise = out[out.index("a reprise through"):out.index("How to look around")]
        assert "/api/v2/dags/demo_reprise/dagRuns" in reprise and "Subject:" in reprise, reprise
        assert "Reprise OK" in out, out[-6000:]
        left = _leftovers(workdir)
        assert not left, "processes left after the demo:\n" + "\n".join(left)
    finally:
        for line in _leftovers(workdir):                 # a failed run must not leak the planted processes
            pid = int(line.split()[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
