"""The national page (ATIH's "page de présentation"): one row per region and, for each month M of the year, the
files and RPU of the cumulative files that complete M (the file covering 1 January–31 May counts in M5), with a
"Total général" row; and the drill-down of a region, per establishment (FINESS_ordre) and month.

Counting rules (include/sql/national/queries/grid.sql): a file counts in the month its period ends; among the
files of one FINESS_ordre ending in a month, the latest (EXTRACT, then reception) stands for it; files = distinct
FINESS_ordre, establishments = distinct FINESS, RPU = the sum of those latest files' counts. Duplicates and
refused files never count. The CLI (`rpu report national`) and the dashboard call these same functions.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from rpu.national import schema

FORMATS = ("table", "csv", "json")
MONTHS = tuple(range(1, 13))
TOTAL_NAME = "Total général"


def _cell(month: int, files=0, establishments=0, rpu=0) -> dict:
    return {"month": month, "label": f"M{month}", "files": int(files), "establishments": int(establishments),
            "rpu": int(rpu)}


def grid(conn, year: int, regions: list | None = None, *, only: str | None = None) -> dict:
    """{"year", "generated_at", "regions": [{"region", "region_name"}], "rows": [{"region", "month", "label",
    "files", "establishments", "rpu"}] (every region × month 1–12, zeros included), "total": [{"month", "label",
    "files", "establishments", "rpu"}] (the "Total général" row)}. `regions`: the region files (their order and
    names; a region found only in the data comes after them); `only`: one region code (an ARS's page)."""
    data = {(r, m): (f, e, n) for r, m, f, e, n in conn.execute(schema.query("grid"), {"year": year, "region": only})}
    names = {r.code: r.name for r in regions or ()}
    codes = [c for c in names if only is None or c == only]
    codes += sorted({r for r, _ in data} - set(codes))
    rows = [{"region": code, "region_name": names.get(code, code)} | _cell(m, *data.get((code, m), (0, 0, 0)))
            for code in codes for m in MONTHS]
    total = [_cell(m, sum(r["files"] for r in rows if r["month"] == m),
                   sum(r["establishments"] for r in rows if r["month"] == m),
                   sum(r["rpu"] for r in rows if r["month"] == m)) for m in MONTHS]
    return {"report": "national", "year": year, "generated_at": datetime.now().astimezone().isoformat(
        timespec="seconds"), "regions": [{"region": c, "region_name": names.get(c, c)} for c in codes],
        "rows": rows, "total": total}


def establishments(conn, year: int, region, finesses: set[str] | None = None) -> dict:
    """The drill-down of a region: {"year", "region", "rows": [{"finess", "ordre", "name", "cells": [12 ×
    {"month", "label", "rpu" | None, "file_name" | None}]}]} — one row per FINESS_ordre received, then each
    establishment of the region file with nothing received (ordre None). `finesses`: only these (a reader)."""
    got: dict[tuple[str, int], dict[int, dict]] = {}
    for r in schema.rows(conn.execute(schema.query("establishments"), {"year": year, "region": region.code})):
        got.setdefault((r["finess"], r["ordre"]), {})[r["month"]] = r
    names = {e.finess: e.name for e in region.establishments}
    keys = sorted(got) + [(e.finess, None) for e in region.establishments if not any(k[0] == e.finess for k in got)]
    rows = []
    for finess, ordre in keys:
        if finesses is not None and finess not in finesses:
            continue
        cells = got.get((finess, ordre), {})
        rows.append({"finess": finess, "ordre": ordre, "name": names.get(finess, "(hors configuration)"),
                     "cells": [{"month": m, "label": f"M{m}", "rpu": cells[m]["rpu"] if m in cells else None,
                                "file_name": cells[m]["file_name"] if m in cells else None} for m in MONTHS]})
    return {"report": "national_region", "year": year, "region": region.code, "region_name": region.name,
            "rows": rows}


def _fmt(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def render(report: dict, fmt: str = "table", months: int = 12) -> str:
    """The grid as text ("table": the slides' grid, French), CSV (`;`, one line per region and month, then the
    total) or JSON."""
    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=";", lineterminator="\n")
        w.writerow(["region", "month", "files", "establishments", "rpu"])
        for r in report["rows"]:
            w.writerow([r["region"], r["month"], r["files"], r["establishments"], r["rpu"]])
        for t in report["total"]:
            w.writerow([TOTAL_NAME, t["month"], t["files"], t["establishments"], t["rpu"]])
        return buf.getvalue()
    shown = MONTHS[:months]
    head = ["Région"] + [f"M{m}" for m in shown]
    by = {(r["region"], r["month"]): r for r in report["rows"]}
    table = [[reg["region_name"]] + [f"{by[(reg['region'], m)]['files']} | {_fmt(by[(reg['region'], m)]['rpu'])}"
                                     for m in shown] for reg in report["regions"]]
    table.append([TOTAL_NAME] + [f"{t['files']} | {_fmt(t['rpu'])}" for t in report["total"][:len(shown)]])
    widths = [max(len(str(x[i])) for x in [head] + table) for i in range(len(head))]
    out = [f"Page de présentation ATIH — année {report['year']} (fichiers | RPU par mois complété)"]
    out += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [head] + table]
    return "\n".join(out) + "\n"


def render_establishments(report: dict, fmt: str = "table") -> str:
    """The drill-down as CSV (finess;ordre;month;rpu;file) or a table (RPU per month, "—" when nothing)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=";", lineterminator="\n")
        w.writerow(["finess", "ordre", "month", "rpu", "file"])
        for r in report["rows"]:
            for c in r["cells"]:
                if c["rpu"] is not None:
                    w.writerow([r["finess"], r["ordre"], c["month"], c["rpu"], c["file_name"]])
        return buf.getvalue()
    head = ["FINESS_ordre", "Établissement"] + [f"M{m}" for m in MONTHS]
    table = [[f"{r['finess']}_{r['ordre'] if r['ordre'] is not None else '-'}", r["name"]]
             + [_fmt(c["rpu"]) if c["rpu"] is not None else "—" for c in r["cells"]] for r in report["rows"]]
    widths = [max(len(str(x[i])) for x in [head] + table) for i in range(len(head))]
    out = [f"Région {report['region_name']} ({report['region']}) — RPU reçus par l'ATIH, année {report['year']}"]
    out += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [head] + table]
    return "\n".join(out) + "\n"
