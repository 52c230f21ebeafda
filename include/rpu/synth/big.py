"""One big file of exactly N visits (benchmarks)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

from rpu.synth.model import Visit
from rpu.synth.render import file_name, write_file
from rpu.synth.visits import day_count, visits_for_day

# --------------------------------------------------------------------------------------------------
# Benchmarks

def _big_layout(finess: str, n_visits: int, seed: int, start: date,
                mean_per_day: float | None) -> tuple[float, list[int], date, datetime]:
    """(mean per day, visits per day, last day, EXTRACT) of a big file; counts are cheap to draw."""
    mean = mean_per_day or max(1.0, min(3000.0, n_visits / 7))
    counts: list[int] = []
    total, day = 0, start
    while total < n_visits:
        c = day_count(finess, day, seed, mean)
        counts.append(min(c, n_visits - total))
        total += c
        day += timedelta(days=1)
    last = start + timedelta(days=max(0, len(counts) - 1))
    extract = datetime.combine(last + timedelta(days=1), datetime.min.time()).replace(hour=2, minute=30)
    return mean, counts, last, extract


def big_file_name(finess: str, n_visits: int, seed: int = 1, start: date = date(2025, 1, 1), *,
                  mean_per_day: float | None = None) -> str:
    """The RPU_<finess>_<EXTRACT>.xml name of the file big_file writes with these arguments."""
    return file_name(finess, _big_layout(finess, n_visits, seed, start, mean_per_day)[3])


def big_file(path: Path, finess: str, n_visits: int, seed: int = 1, start: date = date(2025, 1, 1), *,
             mean_per_day: float | None = None, progress: Callable[[int], None] | None = None) -> Path:
    """One file of exactly `n_visits` visits over consecutive days from `start` (default ~3,000 a day,
    fewer for small n so that at least ~7 days are covered), written in constant memory.

    DATEDEBUT = start, DATEFIN = last entry day, EXTRACT = the day after at 02:30:00.
    `progress(k)` is called after each day with the number of visits it added.
    """
    path = Path(path)
    mean, counts, last, extract = _big_layout(finess, n_visits, seed, start, mean_per_day)

    def visits() -> Iterator[Visit]:
        for i, c in enumerate(counts):
            vs = visits_for_day(finess, start + timedelta(days=i), seed, mean)
            if len(vs) > c:          # the last day is cut so that the total is exact
                vs = vs[:c]
            if progress:
                progress(len(vs))
            yield from vs

    path.parent.mkdir(parents=True, exist_ok=True)
    n = write_file(path, finess, visits(), extract=extract, period=(start, last))
    assert n == n_visits, (n, n_visits)
    return path
