"""DAG-folder parse benchmark: does parsing stay flat as regions are added?

    python bench/parse_dags.py [--regions 18] [--establishments 100] [--repeat 3] [--profile] [--keep]

In a temp dir: REGIONS region files of ESTABLISHMENTS establishments each (FINESS numbers with a valid Luhn key,
`rpu.config.finess_with_key`; time zones of mainland France and the overseas regions; a few EJ numbers, shadow
establishments, contacts), a DAG folder holding a copy of dags/rpu_dags, dags/.airflowignore and one
`region_<code>.py` per region whose content is `rpu.dagset.stub_text(code)` — exactly what `rpu region add` writes.

Each measure runs in a fresh interpreter (`python -c`, RPU_REGIONS_DIR pointing at the temp regions), which first
imports Airflow's DagBag (the time of that import is reported apart, `import_airflow_s`: the DAG processor pays it
once, not per parse) and then times only the DagBag fill, `DagBag(dag_folder=...)`:

(a) `parse_s`       — the whole folder: every region's DAGs (REGIONS × 6). Target: < 2 s.
(b) `one_region_s`  — what a task run parses: its DAG's file only (`region_<code>.py`), with the parsing context
                      of one of its DAG ids (the env var `_AIRFLOW_PARSING_CONTEXT_DAG_ID` that Airflow sets for
                      a task run, read by `get_parsing_context()`): that region's DAGs only.
(c) `folder_with_context_s` — the whole folder under that same parsing context: every other region's file
                      returns before reading its region file, so only one region is built.

Each measure is repeated REPEAT times (each in its own interpreter); the median is reported (and the min).
The DagBag's per-file statistics give the slowest file's time (the first parsed, which pays the one-off imports:
rpu_dags, the factories, rpu.config) apart from the median of the others (the true per-region cost).
`--profile` adds a cProfile of (a): the 25 most expensive functions (cumulative), to see where the time goes.

Progress on stderr; stdout holds the table and, as its last line, one JSON object with every figure (`ok`: the
target is met and the DAG counts are right; exit status 1 otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_json, exit_on_sigterm, note, print_table  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0
KINDS = 6      # intake, send_invs, export_ars, send_atih, watch, reprise
TIMEZONES = ("Europe/Paris", "America/Cayenne", "America/Martinique", "America/Guadeloupe", "Indian/Reunion",
             "Indian/Mayotte")

# Runs in the fresh interpreter: argv = dag folder, target (folder or file), profile path or "".
CHILD = r'''
import json, os, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
import_s = time.perf_counter() - t0
dags, target, profile = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, dags)            # as the DAG processor does for its bundle
if profile:
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
t1 = time.perf_counter()
bag = DagBag(dag_folder=target)
parse_s = time.perf_counter() - t1
if profile:
    prof.disable()
    prof.dump_stats(profile)
stats = sorted(getattr(bag, "dagbag_stats", []) or [], key=lambda s: getattr(s, "file", ""))
durations = [(getattr(s, "file", "?"), s.duration.total_seconds() if hasattr(s.duration, "total_seconds")
              else float(s.duration)) for s in stats]
print("RESULT " + json.dumps({
    "import_s": import_s, "parse_s": parse_s, "dags": len(bag.dag_ids),
    "tasks": sum(len(d.tasks) for d in bag.dags.values()),
    "import_errors": {k: v[-300:] for k, v in bag.import_errors.items()},
    "durations": durations, "dag_ids": sorted(bag.dag_ids)[:12],
}))
'''


def make_fixture(base: Path, n_regions: int, n_etabs: int) -> tuple[Path, Path, list[str]]:
    """Region files and a DAG folder as `rpu region add` leaves them."""
    import yaml

    from rpu import dagset
    from rpu.config import finess_with_key, load_region

    regions, dags = base / "regions", base / "dags"
    regions.mkdir()
    dags.mkdir()
    shutil.copytree(PROJECT / "dags" / "rpu_dags", dags / "rpu_dags", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "dags" / ".airflowignore", dags)
    codes = []
    for r in range(1, n_regions + 1):
        code = f"r{r:02d}"
        etabs = []
        for i in range(n_etabs):
            e = {"finess": finess_with_key(f"9{r:02d}{i + 1:05d}"), "name": f"Urgences {code} n°{i + 1}",
                 "status": "shadow" if i % 10 == 9 else "active"}
            if i % 4 == 1:      # two sites of one legal entity now and then
                e["finess_ej"] = finess_with_key(f"9{r:02d}9{i:04d}")
            if i % 3 == 0:
                e["contact"] = f"dsi-{i}@{code}.example"
            etabs.append(e)
        doc = {"code": code, "name": f"Région {r}", "timezone": TIMEZONES[r % len(TIMEZONES)],
               "alerts": {"ars": [f"ars-{code}@example.org"]}, "establishments": etabs}
        path = regions / f"{code}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        load_region(path)       # a valid file, or the benchmark measures import errors
        (dags / f"region_{code}.py").write_text(dagset.stub_text(code), encoding="utf-8")
        codes.append(code)
    return regions, dags, codes


def measure(base: Path, regions: Path, dags: Path, target: Path, *, context_dag_id: str | None = None,
            profile: Path | None = None) -> dict:
    env = {**os.environ, "RPU_REGIONS_DIR": str(regions), "RPU_DATA_DIR": str(base / "data"),
           "AIRFLOW_HOME": str(base / "airflow_home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    env.pop("_AIRFLOW_PARSING_CONTEXT_TASK_ID", None)
    if context_dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = context_dag_id
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(dags), str(target), str(profile or "")],
                         capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t0
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"parse child failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = wall
    if result["import_errors"]:
        raise RuntimeError(f"import errors: {json.dumps(result['import_errors'], indent=1)[:3000]}")
    return result


def repeated(n: int, *args, **kwargs) -> tuple[dict, list[float]]:
    runs = [measure(*args, **kwargs) for _ in range(n)]
    times = [r["parse_s"] for r in runs]
    median = statistics.median(times)
    return min(runs, key=lambda r: abs(r["parse_s"] - median)), times


def per_file(result: dict) -> tuple[float, float]:
    """(slowest file's duration, median of the others) from the DagBag's own statistics: the slowest is
    usually the first parsed, which pays the one-off imports (rpu_dags, the factories, rpu.config)."""
    d = [s for _, s in result["durations"]]
    if not d:
        return float("nan"), float("nan")
    slowest = max(d)
    rest = sorted(d)[:-1] or [slowest]
    return slowest, statistics.median(rest)


def profile_top(path: Path, n: int = 25) -> list[str]:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("cumulative").print_stats(n)
    return [line for line in buf.getvalue().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--regions", type=int, default=18)
    p.add_argument("--establishments", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3, help="fresh interpreters per measure (median reported)")
    p.add_argument("--profile", action="store_true", help="cProfile the whole-folder parse, print the top functions")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args(argv)
    exit_on_sigterm()

    base = Path(tempfile.mkdtemp(prefix="rpu-bench-parse-"))
    try:
        note(f"writing {args.regions} region files × {args.establishments} establishments into {base}")
        regions, dags, codes = make_fixture(base, args.regions, args.establishments)
        one = codes[len(codes) // 2]
        context = f"{one}_intake"

        note(f"(a) whole folder, {args.repeat}×")
        full, full_times = repeated(args.repeat, base, regions, dags, dags)
        note(f"(b) one file region_{one}.py, parsing context {context}, {args.repeat}×")
        single, single_times = repeated(args.repeat, base, regions, dags, dags / f"region_{one}.py",
                                        context_dag_id=context)
        note(f"(c) whole folder, parsing context {context}, {args.repeat}×")
        ctx, ctx_times = repeated(args.repeat, base, regions, dags, dags, context_dag_id=context)
        top = []
        if args.profile:
            note("(a) once more under cProfile")
            measure(base, regions, dags, dags, profile=base / "parse.prof")
            top = profile_top(base / "parse.prof")

        first_s, per_region_s = per_file(full)
        expected = args.regions * KINDS
        figures = {
            "regions": args.regions,
            "establishments_per_region": args.establishments,
            "dags": full["dags"],
            "tasks": full["tasks"],
            "parse_s": round(statistics.median(full_times), 3),
            "parse_s_min": round(min(full_times), 3),
            "slowest_file_s": round(first_s, 3),
            "per_region_file_s": round(per_region_s, 4),
            "one_region_s": round(statistics.median(single_times), 3),
            "one_region_dags": single["dags"],
            "folder_with_context_s": round(statistics.median(ctx_times), 3),
            "folder_with_context_dags": ctx["dags"],
            "import_airflow_s": round(full["import_s"], 3),
            "process_s": round(full["process_s"], 3),
            "repeat": args.repeat,
            "target_s": TARGET_S,
            "ok": statistics.median(full_times) < TARGET_S and full["dags"] == expected and single["dags"] == KINDS,
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        rows = [
            ("regions × establishments", f"{args.regions} × {args.establishments}"),
            ("DAGs (tasks)", f"{full['dags']} ({full['tasks']})  expected {expected} DAGs"),
            None,
            ("(a) parse whole folder", f"{figures['parse_s']:.3f} s median, {figures['parse_s_min']:.3f} s min "
                                       f"(runs: {', '.join(f'{t:.3f}' for t in full_times)})  target < {TARGET_S} s "
                                       f"→ {'OK' if figures['ok'] else 'MISSED'}"),
            ("    slowest file (one-off imports)", f"{first_s:.3f} s"),
            ("    each other region file", f"{per_region_s * 1000:.1f} ms median"),
            ("(b) one file, parsing context", f"{figures['one_region_s']:.3f} s → {single['dags']} DAGs ({context})"),
            ("(c) whole folder, parsing context", f"{figures['folder_with_context_s']:.3f} s → {ctx['dags']} DAGs"),
            None,
            ("import of Airflow's DagBag (apart)", f"{figures['import_airflow_s']:.3f} s"),
            ("whole child process (a)", f"{figures['process_s']:.3f} s"),
            ("machine", f"{figures['cpus']} CPUs, load {figures['loadavg_1m']}"),
        ]
        print_table("Parsing the DAG folder (DagBag fill only, fresh interpreter per run)", rows)
        if top:
            print("cProfile of (a), by cumulative time:")
            print("\n".join(top))
            print()
        emit_json(figures)
        return 0 if figures["ok"] else 1
    finally:
        if args.keep:
            note(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
