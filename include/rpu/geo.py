"""Postal code → PMSI geographic code of residence, used to anonymise ATIH files.

The table is loaded from a CSV file (`cp;code_geo`, lines starting with # ignored). The ATIH DAG loads the
region's table (`atih.geo_table`) whenever its content changed; `rpu geo load` does it by hand. Codes
missing from the table follow the fallback written in include/sql/queries/export_atih.sql.
"""
from __future__ import annotations

import csv
import hashlib
import re
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


def source_tag(path: Path) -> str:
    return f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def load(conn, path: Path) -> int:
    """Replace the table with the file's rows, in one transaction; returns the row count."""
    rows = read_table(path)
    tag = source_tag(path)
    with conn.transaction():
        conn.execute(store.query("geo_replace"))
        with conn.cursor().copy("COPY pmsi_geo (cp, code_geo, source) FROM STDIN") as copy:
            for cp, code in rows:
                copy.write_row((cp, code, tag))
    return len(rows)


def ensure_loaded(conn, path: Path) -> bool:
    """Load the table if what is loaded does not come from this very file; True when it (re)loaded."""
    tag = source_tag(path)
    if conn.execute(store.query("geo_loaded"), {"tag": tag}).fetchone():
        return False
    load(conn, path)
    return True
