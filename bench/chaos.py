"""Chaos: load real-sized files through the intake's own code path while killing the loader and crashing
PostgreSQL at random moments, re-ingest until done, then compare what is stored with what was sent.

    python bench/chaos.py --db URL [--rounds N (default 20)] [--visits-per-day N (default 1500)] [--seed S]

Files: `rounds` daily files (`rpu.synth.daily_file`, 7-day sliding windows, about visits-per-day × 7 visits each,
a few MB) of four establishments of the demo region over consecutive send days, so that windows overlap and
the replacement rule (by day, by EXTRACT) decides what stays. One round per file:

1. the loader — a child process in its own process group, its imports done (Great Expectations' too), running `rpu.intake.ingest_path(region, url, file,
   sender=FINESS, remote_path=<its inbox path>)` exactly as the intake task does (archive copy, checks, COPY,
   replace, commit, quality gate, receipt), with the forked parser on (RPU_PARALLEL_MIN_MB=1) — is started;
2. at a random moment of its run (uniform over the typical duration of a clean attempt, measured as the run
   goes), one fault: SIGKILL of the loader's process group (the loader and its forked parser), or a restart of
   PostgreSQL with `pg_ctl restart -m immediate` (no shutdown checkpoint: crash recovery at start);
3. the loader is started again until it exits cleanly; each retry has one chance in three of a fault of its
   own (at most three faults per round), so recoveries are themselves interrupted.

Then the stored visits are compared with what was sent: for each establishment-day, the visits of the file
with the latest EXTRACT covering that day (its checked, accepted visits: `rpu.checks.check_file`), identified
by (file name, position in the file). `lost` counts expected visits not stored, `duplicated` stored visits
beyond the expected ones (a visit stored twice, or from a file that should not provide its day); both must be
0. `kills` and `pg_restarts` count the faults that hit a running loader.

The PostgreSQL of --db is restarted, so it must be local and the URL's role a superuser (the data directory
and binaries are read from the server; pg_ctl runs as the owner of the data directory). Without --db, a
PostgreSQL of our own is started, as the other benchmarks do. A database `rpu_chaos_<random>` is created and
dropped at the end unless --keep.

Progress goes to stderr; stdout holds the table and, as its last line, the JSON object
{"files", "kills", "pg_restarts", "expected", "stored", "lost", "duplicated"}.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_database, note, run_benchmark  # noqa: E402

MAX_FAULTS_PER_ROUND = 3
LOADER = """
import sys
from pathlib import Path
from rpu.config import get_region
from rpu.intake import ingest_path
from rpu.quality import gx
gx.gx_module()   # GX's import (seconds) before the clock: a fault lands in the load and the gate, not in imports
region = get_region("demo")
path, sender, url = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
print("start", flush=True)
r = ingest_path(region, url, path, sender=sender, remote_path=f"{sender}/inbox/{path.name}")
print("done", r["status"], r["visits_loaded"], flush=True)
"""


# --- the server we crash --------------------------------------------------------------------------------------

class Server:
    """The PostgreSQL behind a URL, as its superuser sees it: data directory, binaries, owner, log."""

    def __init__(self, url: str):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            self.data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
            self.bindir = Path(conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()[0])
        self.owner = self.data_dir.stat().st_uid
        pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        try:   # where the postmaster writes its log, to keep writing there after a restart
            self.log = os.readlink(f"/proc/{pid}/fd/2")
            if not self.log.startswith("/"):
                self.log = os.devnull
        except OSError:
            self.log = os.devnull

    def restart_immediate(self) -> None:
        cmd = [str(self.bindir / "pg_ctl"), "restart", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "120",
               "-l", self.log]
        if os.geteuid() == 0 and self.owner != 0:
            import pwd

            cmd = ["runuser", "-u", pwd.getpwuid(self.owner).pw_name, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180, cwd="/", stdin=subprocess.DEVNULL)


# --- files and what they should leave stored ------------------------------------------------------------------

def make_files(out: Path, region, rounds: int, per_day: float, seed: int) -> list[tuple[Path, str]]:
    from rpu import synth

    etabs = [e.finess for e in region.active][:4]
    first = date(2026, 3, 2)
    files = []
    for k in range(rounds):
        finess = etabs[k % len(etabs)]
        path = synth.daily_file(out, finess, first + timedelta(days=k // len(etabs)), seed=seed,
                                mean_per_day=per_day)
        files.append((path, finess))
    return files


class _Collect:
    def __init__(self):
        self.rows: list[tuple[int, date]] = []

    def visit(self, row):
        self.rows.append((row[0], row[2]))

    def rejected(self, raw, problem):
        pass


def expected_visits(region, files) -> Counter:
    """(etab, day, file name, position) of every visit that must be stored once all files are in."""
    from rpu.checks import check_file

    best: dict[tuple[str, date], tuple] = {}
    visits: dict[str, list[tuple[int, date]]] = {}
    for path, finess in files:
        sink = _Collect()
        report = check_file(path, region, finess, sink)
        assert report.accepted, (path.name, report.errors[:3])
        visits[path.name] = sink.rows
        day = report.period_start
        while day is not None and day <= report.period_end:
            key = (report.etab, day)
            if key not in best or report.extract > best[key][0]:
                best[key] = (report.extract, path.name)
            day += timedelta(days=1)
    providers = {(etab, day): name for (etab, day), (_, name) in best.items()}
    out = Counter()
    for path, finess in files:
        for idx, day in visits[path.name]:
            if providers.get((finess, day)) == path.name:
                out[(finess, day, path.name, idx)] += 1
    return out


def stored_visits(url: str) -> Counter:
    import psycopg

    with psycopg.connect(url) as conn:
        return Counter(conn.execute("SELECT v.etab, v.entry_date, f.file_name, v.idx FROM visit v "
                                    "JOIN received_file f ON f.id = v.file_id").fetchall())


# --- the rounds ---------------------------------------------------------------------------------------------

class Chaos:
    def __init__(self, url: str, server: Server, env: dict, rng: random.Random, errors: Path):
        self.url, self.server, self.env, self.rng, self.errors = url, server, env, rng, errors
        self.kills = self.pg_restarts = self.attempts = 0
        self.clean_s: list[float] = []

    def typical_s(self) -> float:
        return sorted(self.clean_s)[len(self.clean_s) // 2] if self.clean_s else 4.0

    def attempt(self, path: Path, finess: str, fault: str | None) -> bool:
        """One run of the loader, with `fault` at a random moment of it; True when it finished cleanly."""
        self.attempts += 1
        with open(self.errors, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", LOADER, str(path), finess, self.url], env=self.env,
                                    stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        try:
            first = proc.stdout.readline()
            started = time.monotonic()
            if fault and first.startswith("start"):
                delay = self.rng.uniform(0.0, self.typical_s())
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    if fault == "kill":
                        os.killpg(proc.pid, signal.SIGKILL)
                        self.kills += 1
                        note(f"    SIGKILL of the loader's process group at {delay:.2f} s")
                    else:
                        self.server.restart_immediate()
                        self.pg_restarts += 1
                        note(f"    PostgreSQL restarted (-m immediate) at {delay:.2f} s")
            out = proc.stdout.read()
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if code == 0 and "done" in out:
            self.clean_s.append(time.monotonic() - started)
            return True
        return False

    def round(self, path: Path, finess: str) -> None:
        """Run the loader until it finishes cleanly: a fault in the first run, sometimes in the retries too."""
        fault = self.rng.choice(["kill", "kill", "pg"])
        for tries in range(1, 20):
            hits = self.kills + self.pg_restarts
            if self.attempt(path, finess, fault):
                return
            if self.kills + self.pg_restarts == hits:
                note(f"    the loader failed without a fault (see {self.errors})")
            fault = self.rng.choice(["kill", "pg"]) if tries < MAX_FAULTS_PER_ROUND and self.rng.random() < 1 / 3 \
                else None
        raise RuntimeError(f"{path.name}: never loaded (last loader output in {self.errors})")


def run(args, tmp: Path) -> tuple[list, dict]:
    os.environ["RPU_DATA_DIR"] = str(tmp / "data")        # the loaders' archive copies land in the temp dir
    from rpu.config import get_region

    region = get_region("demo")
    rng = random.Random(args.seed)
    note(f"generating {args.rounds} daily files (~{args.visits_per_day:g} visits a day, 7-day windows) …")
    t0 = time.perf_counter()
    files = make_files(tmp / "files", region, args.rounds, args.visits_per_day, args.seed)
    size = sum(p.stat().st_size for p, _ in files)
    note(f"  {size / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
    note("computing what must be stored …")
    expected = expected_visits(region, files)

    env = dict(os.environ, RPU_PARALLEL_MIN_MB="1")
    with bench_database(args.db, keep=args.keep, prefix="rpu_chaos_") as db:
        server = Server(db.server_url)
        chaos = Chaos(db.url, server, env, rng, tmp / "loader.stderr")
        t0 = time.perf_counter()
        for k, (path, finess) in enumerate(files, 1):
            note(f"round {k}/{len(files)}: {path.name}")
            chaos.round(path, finess)
        chaos_s = time.perf_counter() - t0
        stored = stored_visits(db.url)
        import psycopg

        with psycopg.connect(db.url) as conn:
            pending = conn.execute("SELECT count(*) FROM received_file WHERE gate_pending").fetchone()[0]
            statuses = dict(conn.execute("SELECT status, count(*) FROM received_file GROUP BY status").fetchall())
        where = db.where

    lost = sum((expected - stored).values())
    duplicated = sum((stored - expected).values())
    figures = {"files": len(files), "kills": chaos.kills, "pg_restarts": chaos.pg_restarts,
               "expected": sum(expected.values()), "stored": sum(stored.values()), "lost": lost,
               "duplicated": duplicated}
    rows = [
        ("files", f"{len(files)} ({size / 2**20:.1f} MiB, {sum(expected.values()):,} visits to keep in the end)"),
        ("PostgreSQL", where),
        ("loader runs", f"{chaos.attempts} (typical clean run {chaos.typical_s():.2f} s), {chaos_s:.0f} s in all"),
        ("faults", f"{chaos.kills} SIGKILL of the loader's group, {chaos.pg_restarts} PostgreSQL restarts "
                   "(-m immediate)"),
        ("received files", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))),
        ("batches waiting for their gate", str(pending)),
        None,
        ("expected / stored visits", f"{sum(expected.values()):,} / {sum(stored.values()):,}"),
        ("lost / duplicated", f"{lost} / {duplicated}   {'OK' if lost == duplicated == 0 else 'NOT OK'}"),
    ]
    return rows, figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", help="postgresql:// URL of a local server (superuser) to use, and crash, instead of "
                                "starting one; a database rpu_chaos_<random> is created there and dropped")
    p.add_argument("--rounds", type=int, default=20, help="files loaded under faults (default 20)")
    p.add_argument("--visits-per-day", type=float, default=1500, help="mean visits a day in each file (default 1500)")
    p.add_argument("--seed", type=int, default=1, help="seed of the files and of the faults (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the database and the temp files")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return run_benchmark(run, args, title=f"RPU chaos — {args.rounds} files under faults", prefix="rpu-chaos-")


if __name__ == "__main__":
    sys.exit(main())
