"""The batch the gate judges: the columns of a visit as the suites see them (in Python for a file in memory, as
quality_batch.sql computes them in PostgreSQL for a stored batch), and the day-count bounds (FEDORU).

pandas is imported inside functions only: its import alone is slow, and the intake imports this module.
"""
from __future__ import annotations

import math
import statistics
from datetime import date

from rpu import rpu_format as F
from rpu import store
from rpu.quality.suites import COUNT_SIGMAS, LIST_SEP, PAIR_SEP

# The columns of a batch (quality_batch.sql; `batch_values` for a file in memory), in order.
BATCH_COLUMNS = (
    "cp", "commune", "naissance", "naissance_invalid", "age", "sexe", "mode_entree", "provenance",
    "mode_entree_provenance", "transport", "transport_pec", "motif", "gravite", "dp", "da", "actes", "sortie",
    "sortie_invalid", "duree_min", "mode_sortie", "destination", "mode_sortie_destination", "orient",
    "mode_sortie_orient",
)
NUMERIC_COLUMNS = ("age", "duree_min")
DAY_COLUMNS = ("day", "visits")

HISTORY_MIN_DAYS = 7           # fewer known days before the batch: the day-count expectations get no bound
DROP_SIGMAS = 2                # … μ and σ computed after dropping the days below μ − 2σ


def batch_values(row: tuple) -> tuple:
    """The batch columns (BATCH_COLUMNS) of one checked visit row (rpu.checks.check_visit): in Python what
    quality_batch.sql computes in PostgreSQL from the stored visit."""
    (_idx, _line, day, cp, commune, naissance, sexe, entree, mode_e, prov, transport, transport_pec, motif, gravite,
     dp, da, actes, sortie, mode_s, dest, orient, _extra, raw_invalid, _flags) = row
    n_raw, s_raw = raw_invalid.get("NAISSANCE"), raw_invalid.get("SORTIE")
    age = None if naissance is None else (-1 if naissance > day else F.age_years(naissance, day))
    return (
        cp or None, commune or None, naissance.isoformat() if naissance else n_raw, n_raw, age, sexe or None,
        mode_e or None, prov or None, f"{mode_e}{PAIR_SEP}{prov}" if mode_e and prov else None,
        transport or None, transport_pec or None, motif or None, gravite or None,
        F.normalise_code(dp) if dp else None,
        F.normalise_code(LIST_SEP.join(da)) if da else None,
        LIST_SEP.join(actes) if actes else None,
        sortie.isoformat(sep=" ") if sortie else s_raw, s_raw,
        (sortie - entree).total_seconds() / 60 if sortie else None,
        mode_s or None, dest or None, f"{mode_s}{PAIR_SEP}{dest}" if mode_s and dest else None,
        orient or None, f"{mode_s}{PAIR_SEP}{orient}" if mode_s and orient else None,
    )


class FrameSink:
    """rpu.checks.VisitSink keeping the batch columns of every accepted visit (for `rpu validate --quality`)."""

    def __init__(self):
        self.rows: list[tuple] = []

    def visit(self, row: tuple) -> None:
        self.rows.append(batch_values(row))

    def rejected(self, raw, problem) -> None:
        pass

    def frame(self):
        import pandas as pd

        df = pd.DataFrame.from_records(self.rows, columns=list(BATCH_COLUMNS))
        for c in NUMERIC_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        return df


class SqliteSink:
    """rpu.checks.VisitSink writing the batch columns of every accepted visit into the table `batch` of a SQLite
    database, `chunk` rows at a time (`rpu validate --quality`: memory bounded whatever the file's size)."""

    def __init__(self, db, chunk: int):
        self.db = db
        self.chunk = chunk
        self.rows: list[tuple] = []
        types = {c: ("REAL" if c in NUMERIC_COLUMNS else "TEXT") for c in BATCH_COLUMNS}
        db.execute(f"CREATE TABLE batch ({', '.join(f'{c} {t}' for c, t in types.items())})")
        self.insert = f"INSERT INTO batch VALUES ({', '.join('?' * len(BATCH_COLUMNS))})"

    def visit(self, row: tuple) -> None:
        self.rows.append(batch_values(row))
        if len(self.rows) >= self.chunk:
            self.flush()

    def rejected(self, raw, problem) -> None:
        pass

    def flush(self) -> None:
        if self.rows:
            self.db.executemany(self.insert, self.rows)
            self.rows.clear()
        self.db.commit()


FILE_ID_COLUMN = "rpu_file_id"  # the first column of a run's view (the file each visit came from)


def view_name(view: str | None, prefix: str, ids: list[int]) -> str:
    """`view`, or the one file's `<prefix>_<file id>`; a name written into SQL text: letters, digits, `_` only."""
    if view is None:
        (one,) = ids
        view = f"{prefix}_{one}"
    if not view.replace("_", "").isalnum():
        raise ValueError(f"view name {view!r}")
    return view


def batch_view_sql(name: str, file_ids: list[int], view: str | None = None) -> str:
    """quality_batch_view.sql / quality_batch_drop.sql: the view `batch_<file id>` of one file's batch (the
    columns BATCH_COLUMNS), or with `view` (a run's, `run_<backend pid>`) the batches of several files with the
    file's id first (FILE_ID_COLUMN). A view has no parameters: the ids, integers, are written into the text."""
    ids = [int(i) for i in file_ids]
    view = view_name(view, "batch", ids)
    return (store.query(name).replace("{view}", view)
            .replace("{file_id_column}", "" if view.startswith("batch_") else f"v.file_id AS {FILE_ID_COLUMN}, ")
            .replace("{file_ids}", ", ".join(map(str, ids))))


DAY_MIN_COLUMN = "rpu_day_min"     # a run's day-count view: each file's own day_min (rpu_batch's parameter)


def days_view_sql(name: str, day_min: dict[int, float], view: str | None = None) -> str:
    """quality_days_view.sql / quality_batch_drop.sql: the view `day_<file id>` of one file's day counts (the
    columns DAY_COLUMNS), or with `view` (a run's, `runday_<backend pid>`) the day counts of several files with
    the file's id (FILE_ID_COLUMN) and its parameter day_min (DAY_MIN_COLUMN), from {file id: day_min}. A view
    has no parameters: the numbers are written into the text (finite floats, integers)."""
    ids = [int(i) for i in day_min]
    mins = [float(v) for v in day_min.values()]
    if not ids or not all(math.isfinite(m) for m in mins):
        raise ValueError(f"day_min of the files: {day_min!r}")
    whole = view is not None
    view = view_name(view, "day", ids)
    return (store.query(name).replace("{view}", view)
            .replace("{file_id_column}", f"p.file_id AS {FILE_ID_COLUMN}, " if whole else "")
            .replace("{day_min_column}", f", p.day_min AS {DAY_MIN_COLUMN}" if whole else "")
            .replace("{params}", ", ".join(f"({i}, {m!r}::double precision)" for i, m in zip(ids, mins)))
            .replace("{file_ids}", ", ".join(map(str, ids))))


def fedoru_baseline(history: list[int]) -> tuple[float, float] | None:
    """(μ, σ) of an establishment's recent daily counts, after dropping the days below μ − 2σ (FEDORU);
    None with fewer than HISTORY_MIN_DAYS days."""
    if len(history) < HISTORY_MIN_DAYS:
        return None
    mu, sigma = statistics.fmean(history), statistics.pstdev(history)
    kept = [n for n in history if n >= mu - DROP_SIGMAS * sigma]
    return statistics.fmean(kept), statistics.pstdev(kept)


def count_parameters(history: list[int], n_days: int) -> dict:
    """The rpu_batch suite parameters for a batch of `n_days` entry days, from the recent daily counts."""
    base = fedoru_baseline(history)
    if base is None or n_days == 0:
        return {"day_min": 0, "row_count_min": 0, "row_count_max": None, "history_days": len(history)}
    mu, sigma = base
    spread = COUNT_SIGMAS * sigma * math.sqrt(n_days)
    return {"day_min": round(max(0.0, mu - COUNT_SIGMAS * sigma), 2),
            "row_count_min": round(max(0.0, n_days * mu - spread), 2),
            "row_count_max": round(n_days * mu + spread, 2),
            "history_days": len(history), "mu": round(mu, 2), "sigma": round(sigma, 2)}


def days_frame(per_day: dict[date, int]):
    import pandas as pd

    return pd.DataFrame({"day": list(per_day), "visits": [int(n) for n in per_day.values()]},
                        columns=list(DAY_COLUMNS))

