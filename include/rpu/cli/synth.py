"""`rpu synth`: synthetic RPU files, a region's daily files or one big file (rpu.synth)."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from rpu.config import get_region, load_region
from rpu.synth import ERRORS, big_file, big_file_name, plan, write_planned
from rpu.synth.daily import _check_errors


def add_synth(sub) -> None:
    p = sub.add_parser(
        "synth", help="write synthetic RPU files (a region's daily files, or one big file)",
        description="Write realistic synthetic RPU 2006 files: for each establishment of the region and each "
                    "send day, the daily sliding-window file in OUT/<finess>/; or, with --visits, one big "
                    "file of N visits for benchmarks.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--region", help="region code (config/regions/CODE.yaml); default demo")
    g.add_argument("--region-file", type=Path, help="path of a region file")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--start", type=date.fromisoformat,
                   help="first send day YYYY-MM-DD (default: so that the last send day is today)")
    p.add_argument("--days", type=int, default=7, help="number of send days (default 7)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply establishment sizes (default 1)")
    p.add_argument("--errors", default="",
                   help=f"comma-separated errors to inject, each once: {','.join(ERRORS)} (or all)")
    p.add_argument("--window", type=int, default=7, help="days per daily file (default 7)")
    p.add_argument("--visits", type=int, help="write one big file of N visits instead (benchmarks)")
    p.add_argument("--finess", help="establishment of the big file (default: the region's first)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    t0 = time.monotonic()
    try:
        region = load_region(args.region_file) if args.region_file else get_region(args.region or "demo")
        errors = _check_errors(args.errors or "")
    except ValueError as exc:
        print(f"rpu synth: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.visits is not None:
        if args.visits < 0:
            print("rpu synth: --visits must be >= 0", file=sys.stderr)
            return 2
        finess = args.finess or region.establishments[0].finess
        start = args.start or date(2025, 1, 1)
        path = out / big_file_name(finess, args.visits, seed=args.seed, start=start)
        with tqdm(total=args.visits, unit="visit", unit_scale=True, disable=None, file=sys.stderr,
                  desc="synth") as bar:
            big_file(path, finess, args.visits, seed=args.seed, start=start, progress=bar.update)
        size = path.stat().st_size
        print(f"synth: 1 file, {args.visits:,} visits, {size / 1e6:,.1f} MB → {path} "
              f"({time.monotonic() - t0:.1f} s)")
        return 0
    days = args.days
    if days < 1:
        print("rpu synth: --days must be >= 1", file=sys.stderr)
        return 2
    start = args.start or (date.today() - timedelta(days=days - 1))
    try:
        planned = plan(region, start=start, days=days, seed=args.seed, scale=args.scale, errors=errors,
                       window_days=args.window)
    except ValueError as exc:
        print(f"rpu synth: {exc}", file=sys.stderr)
        return 2
    n_visits = 0
    with tqdm(total=len(planned), unit="file", disable=None, file=sys.stderr, desc="synth") as bar:
        for pf in planned:
            _, n = write_planned(out, pf, seed=args.seed, window_days=args.window)
            n_visits += n
            bar.update(1)
    print(f"synth: {len(planned)} files, {n_visits:,} visits, {len(region.establishments)} establishments of "
          f"region {region.code}, send days {start} … {start + timedelta(days=days - 1)}"
          f"{', errors ' + ','.join(errors) if errors else ''} → {out} ({time.monotonic() - t0:.1f} s)")
    return 0
