"""Postal code → PMSI geographic code of residence, used to anonymise ATIH files.

The table (`pmsi_geo`) is loaded from a CSV file (`cp;code_geo`, lines starting with # ignored), either by hand
with `rpu geo load` or from the file a region names in `atih.geo_table`. Every load is recorded (`geo_load`):

- a table loaded by hand is the one used until another load;
- the region's file, when the key is set, is loaded only when its content changed since it was last loaded
  (a hand load in between stays in use while that file is unchanged);
- nothing else is ever loaded: no region falls back to the demo sample (config refuses the sample outside the
  demo region).

Before an ATIH send, `check_coverage` refuses an empty table, or one that maps less than `atih.geo_min_match`
(default 95 %) of the visits' French postal codes: sending fallback codes (`XX999`) for a whole region is
worse than not sending. Codes missing from the table follow the fallback of include/sql/queries/export_atih.sql.
Loads are serialised by an advisory lock (geo_lock.sql).
"""
from __future__ import annotations

import csv
import hashlib
import re
from datetime import date
from pathlib import Path

from rpu import store

CODE_RE = re.compile(r"[0-9][0-9AB][0-9A-Z]{3}")


class GeoTableError(ValueError):
    pass


def read_table(path: Path) -> list[tuple[str, str]]:
    """Rows (cp, code_geo) of a table file; raises GeoTableError naming the line of a bad row."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        lines = [(n, line) for n, line in enumerate(fh, 1) if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.reader((line for _, line in lines), delimiter=";")
    for (n, _), rec in zip(lines, reader):
        if [x.strip().lower() for x in rec] == ["cp", "code_geo"]:
            continue
        if len(rec) != 2 or not re.fullmatch(r"[0-9][0-9AB][0-9]{3}", rec[0].strip()) \
                or not CODE_RE.fullmatch(rec[1].strip()):
            raise GeoTableError(f"{path}, line {n}: expected 'cp;code_geo' (5 characters each), got {rec!r}")
        rows.append((rec[0].strip(), rec[1].strip()))
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_locked(conn, path: Path, origin: str, sha: str) -> int:
    rows = read_table(path)
    conn.execute(store.query("geo_replace"))
    with conn.cursor().copy("COPY pmsi_geo (cp, code_geo, source) FROM STDIN") as copy:
        for cp, code in rows:
            copy.write_row((cp, code, f"{origin}:{path.name}:{sha[:16]}"))
    conn.execute(store.query("geo_load_insert"), {"origin": origin, "path": str(path), "sha256": sha,
                                                   "rows": len(rows)})
    return len(rows)


def load(conn, path: Path, origin: str = "manual") -> int:
    """Replace the table with the file's rows, in one transaction (one load at a time); returns the row count."""
    path = Path(path).resolve()
    sha = _sha256(path)
    with conn.transaction():
        conn.execute(store.query("geo_lock"))
        return _load_locked(conn, path, origin, sha)


def ensure_loaded(conn, path: Path | None) -> bool:
    """Load the region's file (`atih.geo_table`) if its content changed since it was last loaded from there;
    True when it (re)loaded. No file named: nothing is loaded (the table loaded by hand is used)."""
    if path is None:
        return False
    path = Path(path).resolve()
    sha = _sha256(path)
    with conn.transaction():
        conn.execute(store.query("geo_lock"))
        # under the lock: a load that committed while we waited is seen, and not done twice
        last = conn.execute(store.query("geo_last_load"), {"path": str(path)}).fetchone()
        if last and last[0].strip() == sha:
            return False
        _load_locked(conn, path, "region", sha)
    return True


def state(conn) -> dict:
    """The table in use: rows, and origin, path, sha256 and time of its last load (None if unrecorded)."""
    cur = conn.execute(store.query("geo_state"))
    return dict(zip([c.name for c in cur.description], cur.fetchone()))


def check_coverage(conn, region, etabs: list[str], start: date, end: date) -> dict:
    """Refuse (GeoTableError) an ATIH send with no postal code table, or with one mapping less than the
    region's `atih.geo_min_match` of the visits' French postal codes over the period. Returns the figures."""
    st = state(conn)
    where = (f"loaded {'by hand' if st['origin'] == 'manual' else 'from the region file'} from {st['path']}"
             if st["origin"] else "loaded before loads were recorded")
    if not st["rows"]:
        raise GeoTableError(
            f"region {region.code}: the postal code → PMSI geographic code table (pmsi_geo) is empty: load ATIH's "
            "table with `rpu geo load --db URL --file FILE`, or name it in the region file (atih.geo_table); "
            "nothing was sent to ATIH")
    eligible, matched = conn.execute(store.query("geo_coverage"),
                                     {"etabs": list(etabs), "start": start, "end": end}).fetchone()
    share = matched / eligible if eligible else 1.0
    figures = {"rows": st["rows"], "eligible": eligible, "matched": matched, "share": share,
               "threshold": region.atih.geo_min_match, "table": where}
    if share < region.atih.geo_min_match:
        raise GeoTableError(
            f"region {region.code}: the postal code table ({st['rows']} codes, {where}) maps only "
            f"{matched} of {eligible} French postal codes of the visits from {start} to {end} ({share:.1%}; "
            f"at least {region.atih.geo_min_match:.0%} needed, atih.geo_min_match): is it ATIH's table of the year? "
            "Load it with `rpu geo load --db URL --file FILE`; nothing was sent to ATIH")
    return figures
