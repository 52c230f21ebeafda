"""What the commands share: the region of `--region`, dates as arguments, plain-text tables."""
from __future__ import annotations

import argparse
from datetime import date

from rpu.config import get_region


def region_of(args):
    """The region named by `--region`, or None when the command was given none."""
    return get_region(args.region) if getattr(args, "region", None) else None


def date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(x) for x in cells])
