"""Reports for the ARS, the ORU and ATIH checks: transmissions per month (the table ATIH shows) and data quality
(FEDORU completeness and "exploitabilité"). Plain Python: the CLI (`rpu report …`) and the dashboard call the
same functions; PostgreSQL does the counting (include/sql/queries/report_*.sql), whatever the region's size.

Both functions return JSON-friendly dicts (str, int, float, bool, None, lists and dicts only: `json.dumps`
works as is); `render(report, fmt)` turns either into a table (French, for people), CSV or JSON.
The counting rules are documented in docs/reports.md.
"""
from __future__ import annotations

import calendar
import csv
import io
import json
from datetime import date, datetime

from rpu import rpu_format as F
from rpu import store
from rpu.config import Region
from rpu.problems import QUALITY, RULES
from rpu.quality import results as quality_results

FORMATS = ("table", "csv", "json")
TARGET_PCT = 80.0   # FEDORU: each item filled (and exploitable) on at least 80 % of the visits
TOTAL_NAME = "Total région"
UNCONFIGURED_NAME = "(hors configuration)"
MONTHS_FR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.")

# The FEDORU denominator of each item (every visit unless listed), for documents and dashboards.
DENOMINATORS = {
    "DP": "passages dont ORIENT n'est pas FUGUE, SCAM, PSA ou REO",
    "DESTINATION": "passages hospitalisés (MODE_SORTIE 6 ou 7)",
    "ORIENT": "passages hospitalisés (MODE_SORTIE 6 ou 7)",
}
ALL_VISITS = "tous les passages"
QUALITY_RULES = tuple(r for r, (level, _) in RULES.items() if level == QUALITY)


def _pct(num: int, den: int) -> float | None:
    return round(100.0 * num / den, 1) if den else None


def _etab(value) -> str | None:
    return value.strip() if value else None


def _entities(region: Region, found) -> list[dict]:
    """The establishments of the region file, in its order, then any other FINESS found in the data."""
    rows = [{"finess": e.finess, "name": e.name, "status": e.status, "configured": True, "total": False}
            for e in region.establishments]
    known = {e.finess for e in region.establishments}
    rows += [{"finess": f, "name": UNCONFIGURED_NAME, "status": None, "configured": False, "total": False}
             for f in sorted(x for x in found if x and x not in known)]
    return rows


def _total_entity() -> dict:
    return {"finess": None, "name": TOTAL_NAME, "status": None, "configured": None, "total": True}


def _now(region: Region) -> str:
    return datetime.now(region.tz).isoformat(timespec="seconds")


# --- transmissions ----------------------------------------------------------------------------------------

def transmissions(conn, region: Region, year: int) -> dict:
    """Files received and RPUs per establishment and month of `year`, cumulative from 1 January (as ATIH shows
    them), and what was sent to ATIH for each month, to check that the two agree.

    Returns::

        {"report": "transmissions", "region": "demo", "region_name": "…", "year": 2026,
         "generated_at": "2026-04-03T10:00:00+02:00",
         "months": ["2026-01", …, "2026-12"], "month_ends": ["2026-01-31", …, "2026-12-31"],
         "rows": [   # the region file's establishments (in its order, even without data), then any other FINESS
                     # found in the data ("configured": false), then the region total ("total": true, finess None)
            {"finess": "990000101", "name": "…", "status": "active" | "shadow" | None,
             "configured": True, "total": False,
             "cells": [   # 12, one per month
                {"month": "2026-01", "month_end": "2026-01-31",
                 "files": 3,            # accepted files with EXTRACT in [1 Jan, month end]
                 "rpus": 1200,          # visits stored now, entered in [1 Jan, month end]
                 "rejected_files": 0,   # rejected files over the same span (not in `files`)
                 "atih": None | {       # the ATIH file sent for the month (None: none sent)
                     "visits": 1200,    # the RPU count of that file (send ledger)
                     "stored": 1200,    # visits stored now over that file's period
                     "kind": "cumulative" | "reprise", "period_start": "2026-01-01", "period_end": "2026-01-31",
                     "file_name": "…", "sent_at": "2026-02-02T06:00:12+01:00"},
                     # on the total row: {"visits": Σ, "stored": Σ, "establishments": number with a file}
                 "match": True | False | None}]}]}   # atih.visits == atih.stored; None without a file
                                                     # (total row: every establishment's file matches)

    Counting rules: `files` and `rejected_files` count a file in the month of its EXTRACT (a rejected file
    without a readable EXTRACT: its local reception date), duplicates never count; `rpus` counts a visit in the
    month of its entry, as stored now (cancel-and-replace applied); the region total adds every row, plus the
    rejected files whose establishment could not be determined. The ATIH file of a month is the `sent` ATIH
    file (cumulative or reprise, period from 1 January) whose period ends latest within the month — the last
    one sent among equals, since each ATIH file replaces the previous one.
    """
    year_start, year_end = date(year, 1, 1), date(year, 12, 31)
    cur = conn.execute(store.query("report_transmissions"),
                       {"year_start": year_start, "year_end": year_end, "tz": region.timezone})
    cols = [c.name for c in cur.description]
    by_etab: dict[str | None, list[dict]] = {}
    for r in cur.fetchall():
        r = dict(zip(cols, r))
        by_etab.setdefault(_etab(r["etab"]), []).append(r)
    months = [date(year, m, 1) for m in range(1, 13)]
    month_ends_d = [date(year, m, calendar.monthrange(year, m)[1]) for m in range(1, 13)]

    def cell(i: int, r: dict | None) -> dict:
        c = {"month": f"{months[i]:%Y-%m}", "month_end": month_ends_d[i].isoformat(),
             "files": 0, "rpus": 0, "rejected_files": 0, "atih": None, "match": None}
        if r is None:
            return c
        c.update(files=int(r["files"]), rpus=int(r["rpus"]), rejected_files=int(r["rejected"]))
        if r["atih_visits"] is not None:
            c["atih"] = {"visits": int(r["atih_visits"]), "stored": int(r["atih_stored"]), "kind": r["atih_kind"],
                         "period_start": r["atih_period_start"].isoformat(),
                         "period_end": r["atih_period_end"].isoformat(), "file_name": r["atih_file"],
                         "sent_at": r["atih_sent_at"].astimezone(region.tz).isoformat(timespec="seconds")
                         if r["atih_sent_at"] else None}
            c["match"] = c["atih"]["visits"] == c["atih"]["stored"]
        return c

    rows = []
    for ent in _entities(region, by_etab):
        data = {r["month_start"]: r for r in by_etab.get(ent["finess"], [])}
        rows.append(ent | {"cells": [cell(i, data.get(m)) for i, m in enumerate(months)]})
    unattributed = {r["month_start"]: r for r in by_etab.get(None, [])}
    total_cells = []
    for i, m in enumerate(months):
        cs = [row["cells"][i] for row in rows]
        extra = int(unattributed[m]["rejected"]) if m in unattributed else 0
        sent = [c for c in cs if c["atih"] is not None]
        total_cells.append({
            "month": f"{m:%Y-%m}", "month_end": month_ends_d[i].isoformat(),
            "files": sum(c["files"] for c in cs), "rpus": sum(c["rpus"] for c in cs),
            "rejected_files": sum(c["rejected_files"] for c in cs) + extra,
            "atih": {"visits": sum(c["atih"]["visits"] for c in sent), "stored": sum(c["atih"]["stored"] for c in sent),
                     "establishments": len(sent)} if sent else None,
            "match": all(c["match"] for c in sent) if sent else None,
        })
    rows.append(_total_entity() | {"cells": total_cells})
    return {"report": "transmissions", "region": region.code, "region_name": region.name, "year": year,
            "generated_at": _now(region), "months": [f"{m:%Y-%m}" for m in months],
            "month_ends": [d.isoformat() for d in month_ends_d], "rows": rows}


# --- quality ----------------------------------------------------------------------------------------------

def _item_cols(item: str) -> tuple[str, str, str]:
    k = item.lower()
    return f"{k}_den", f"{k}_filled", f"{k}_valid"


def quality(conn, region: Region, start: date, end: date) -> dict:
    """Completeness and "exploitabilité" of every RPU item per establishment (FEDORU definitions), and the share
    of visits flagged per quality rule, over the visits entered in [start, end] (inclusive), as stored now.

    Returns::

        {"report": "quality", "region": "demo", "region_name": "…", "start": "2026-01-01", "end": "2026-03-31",
         "generated_at": "…", "target_pct": 80.0,
         "items": ["CP", …, "ORIENT"],                  # rpu_format.ITEMS, in order
         "denominators": {"CP": "tous les passages", …, "DP": "passages dont ORIENT …", …},
         "rules": ["CP_FORMAT", …],                     # every quality rule of rpu.problems, in order
         "rule_labels": {"CP_FORMAT": "code postal mal formé …", …},
         "rows": [   # the region file's establishments (even without visits), other FINESS found, then the region
            {"finess": "990000101", "name": "…", "status": "active", "configured": True, "total": False,
             "visits": 6, "flagged_visits": 5, "flagged_pct": 83.3,
             "items": {"CP": {"denominator": 6, "filled": 6, "valid": 5,
                              "completeness_pct": 100.0, "exploitability_pct": 83.3}, …},
             "flags": {"CP_FORMAT": {"visits": 1, "pct": 16.7}, …}}]}   # every rule, 0 included

    Percentages are rounded to one decimal, None when the denominator is 0; the counts are exact.
    completeness = filled / denominator; exploitabilité = (filled and valid) / denominator. Denominators: every
    visit, except DESTINATION and ORIENT (MODE_SORTIE 6/7 only) and DP (ORIENT not FUGUE/SCAM/PSA/REO).
    Valid: within rpu_format's domain or format and without the quality flag that makes the value unusable
    (see docs/reports.md for the table per item). flagged pct = visits flagged / visits.
    """
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    params = {"start": start, "end": end}
    cur = conn.execute(store.query("report_quality"), params)
    cols = [c.name for c in cur.description][1:]
    counts: dict[str | None, dict[str, int]] = {}
    for r in cur.fetchall():
        counts[_etab(r[0])] = dict(zip(cols, map(int, r[1:])))
    flags: dict[str | None, dict[str, int]] = {}
    for etab, rule, n in conn.execute(store.query("report_quality_flags"), params):
        flags.setdefault(_etab(etab), {})[rule] = int(n)
    # the region line: every figure is a count, so the region's are the sums of the establishments'
    if counts:
        counts[None] = {c: sum(r[c] for r in counts.values()) for c in cols}
    seen = {rule for fl in flags.values() for rule in fl}
    flags[None] = {rule: sum(fl.get(rule, 0) for fl in flags.values()) for rule in seen}
    unknown_rules = sorted(seen - set(QUALITY_RULES))
    rules = list(QUALITY_RULES) + unknown_rules   # a rule of older data keeps being shown

    def measures(r: dict | None, fl: dict[str, int]) -> dict:
        visits = int(r["visits"]) if r else 0
        flagged = int(r["flagged"]) if r else 0
        items = {}
        for item in F.ITEMS:
            den_c, filled_c, valid_c = _item_cols(item)
            den, filled, valid = (int(r[den_c]), int(r[filled_c]), int(r[valid_c])) if r else (0, 0, 0)
            items[item] = {"denominator": den, "filled": filled, "valid": valid,
                           "completeness_pct": _pct(filled, den), "exploitability_pct": _pct(valid, den)}
        return {"visits": visits, "flagged_visits": flagged, "flagged_pct": _pct(flagged, visits), "items": items,
                "flags": {rule: {"visits": fl.get(rule, 0), "pct": _pct(fl.get(rule, 0), visits)} for rule in rules}}

    rows = [ent | measures(counts.get(ent["finess"]), flags.get(ent["finess"], {}))
            for ent in _entities(region, [k for k in counts if k])]
    rows.append(_total_entity() | measures(counts.get(None), flags.get(None, {})))
    return {"report": "quality", "region": region.code, "region_name": region.name, "start": start.isoformat(),
            "end": end.isoformat(), "generated_at": _now(region), "target_pct": TARGET_PCT, "items": list(F.ITEMS),
            "denominators": {item: DENOMINATORS.get(item, ALL_VISITS) for item in F.ITEMS},
            "rules": rules, "rule_labels": {r: RULES[r][1] if r in RULES else r for r in rules}, "rows": rows,
            "gates": gates(conn, region, start, end)}


def gates(conn, region: Region, start: date, end: date) -> list[dict]:
    """The quality gate's stored results (rpu.quality) for the files received in [start, end], per establishment:
    files checked, files with an expectation not met, files held back, and per expectation the files failing and
    the visits concerned. [{finess, name, files, files_failed, files_quarantined, expectations: {name:
    {files_failed, unexpected_count, blocking}}}] — establishments with at least one checked file, region order."""
    per: dict[str, dict] = {}
    for r in quality_results.stored_results(conn, start, end):   # one row per file, suite and expectation
        etab = (r["etab"] or "").strip()
        g = per.setdefault(etab, {"files": set(), "failed": set(), "quarantined": set(), "expectations": {}})
        g["files"].add(r["file_id"])
        if r["quarantined"]:
            g["quarantined"].add(r["file_id"])
        if r["expectation"] is not None and r["success"] is False:
            g["failed"].add(r["file_id"])
            e = g["expectations"].setdefault(r["expectation"], {"files_failed": 0, "unexpected_count": 0,
                                                                "blocking": bool(r["blocking"])})
            e["files_failed"] += 1
            e["unexpected_count"] += int(r["unexpected_count"] or 0)
    out = []
    for ent in _entities(region, list(per)):
        g = per.get(ent["finess"])
        if g:
            out.append({"finess": ent["finess"], "name": ent["name"], "files": len(g["files"]),
                        "files_failed": len(g["failed"]), "files_quarantined": len(g["quarantined"]),
                        "expectations": dict(sorted(g["expectations"].items()))})
    return out


# --- rendering --------------------------------------------------------------------------------------------

def render(report: dict, fmt: str = "table") -> str:
    """A report of `transmissions` or `quality` as text: "table" (French, aligned columns), "csv" (`;`, one row
    per establishment and month / per establishment and measure, header line) or "json"."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=1) + "\n"
    kind = report.get("report")
    if kind not in ("transmissions", "quality"):
        raise ValueError(f"not a report: {kind!r}")
    return {("transmissions", "table"): _transmissions_table, ("transmissions", "csv"): _transmissions_csv,
            ("quality", "table"): _quality_table, ("quality", "csv"): _quality_csv}[kind, fmt](report)


def _label(row: dict, width: int = 32) -> tuple[str, str]:
    name = row["name"] or ""
    if len(name) > width:
        name = name[: width - 1] + "…"
    return row["finess"] or "", name


def _aligned(columns: list[str], rows: list[list[str]], left: int = 2) -> str:
    """Columns separated by two spaces: the first `left` ones (FINESS, name) aligned left, figures right."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(vals):
        return "  ".join(v.ljust(w) if i < left else v.rjust(w)
                         for i, (v, w) in enumerate(zip(vals, widths))).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _grid(report: dict, value) -> str:
    """Rows = establishments then the total, columns = the 12 months, cells `value(month index, cell)`."""
    months = [MONTHS_FR[int(m[5:7]) - 1] for m in report["months"]]
    rows = [list(_label(row)) + [value(i, c) for i, c in enumerate(row["cells"])] for row in report["rows"]]
    return _aligned(["FINESS", "Établissement"] + months, rows)


def _files_rpus_grid(report: dict) -> str:
    """The ATIH-like grid: "files | RPUs", both parts aligned within each month's column."""
    wf = [max(len(str(row["cells"][i]["files"])) for row in report["rows"]) for i in range(12)]
    wr = [max(len(str(row["cells"][i]["rpus"])) for row in report["rows"]) for i in range(12)]
    return _grid(report, lambda i, c: f"{c['files']:>{wf[i]}} | {c['rpus']:>{wr[i]}}")


def _fr(iso: str) -> str:
    return f"{iso[8:10]}/{iso[5:7]}"


def _atih_cell(c: dict) -> str:
    a = c["atih"]
    if a is None:
        return "—"
    text = f"{a['visits']} ok" if c["match"] else f"{a['visits']} ≠ {a['stored']}"
    if "period_end" in a and a["period_end"] != c["month_end"]:
        text += f" (au {_fr(a['period_end'])})"
    return text


def _transmissions_table(r: dict) -> str:
    parts = [
        f"Transmissions {r['year']} — {r['region_name']} ({r['region']})",
        "",
        "Fichiers acceptés | RPU, cumulés du 1er janvier à la fin de chaque mois (comme le tableau de l'ATIH) :",
        "un fichier compte au mois de sa date d'extraction, un RPU au mois de sa date d'entrée.",
        "",
        _files_rpus_grid(r),
        "",
        "Envoyé à l'ATIH : RPU du dernier fichier envoyé dont la période finit dans le mois ; « ok » : égal",
        "aux RPU de la base sur la même période, « n ≠ m » : n envoyés, m dans la base aujourd'hui ; — : aucun",
        "envoi.",
        "",
        _grid(r, lambda i, c: _atih_cell(c)),
    ]
    if any(c["rejected_files"] for row in r["rows"] for c in row["cells"]):
        parts += ["", "Fichiers rejetés (cumul depuis le 1er janvier, non comptés ci-dessus) :", "",
                  _grid(r, lambda i, c: str(c["rejected_files"]))]
    return "\n".join(parts) + "\n"


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow(header)
    w.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


TRANSMISSIONS_CSV = ["finess", "name", "month", "month_end", "files", "rpus", "rejected_files", "atih_visits",
                     "atih_stored", "atih_period_end", "atih_kind", "atih_file_name", "atih_sent_at", "match"]


def _yes_no(v: bool | None) -> str | None:
    return None if v is None else ("yes" if v else "no")


def _transmissions_csv(r: dict) -> str:
    out = []
    for row in r["rows"]:
        for c in row["cells"]:
            a = c["atih"] or {}
            out.append([row["finess"], row["name"], c["month"], c["month_end"], c["files"], c["rpus"],
                        c["rejected_files"], a.get("visits"), a.get("stored"), a.get("period_end"), a.get("kind"),
                        a.get("file_name"), a.get("sent_at"), _yes_no(c["match"])])
    return _csv(TRANSMISSIONS_CSV, out)


def _fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _quality_table(r: dict) -> str:
    def grid(value, columns) -> str:
        rows = [list(_label(row)) + [str(row["visits"])] + [value(row, col) for col in columns] for row in r["rows"]]
        return _aligned(["FINESS", "Établissement", "Passages"] + list(columns), rows)

    region = r["rows"][-1]
    seen_rules = [rule for rule in r["rules"] if region["flags"][rule]["visits"]]
    parts = [
        f"Qualité des RPU — {r['region_name']} ({r['region']}), passages entrés du {r['start']} au {r['end']}",
        "",
        f"Complétude (% des passages où l'élément est renseigné ; cible ≥ {r['target_pct']:.0f} %) :",
        "DESTINATION et ORIENT sur les seuls passages hospitalisés (MODE_SORTIE 6/7), DP hors ORIENT FUGUE,",
        "SCAM, PSA, REO.",
        "",
        grid(lambda row, item: _fmt_pct(row["items"][item]["completeness_pct"]), r["items"]),
        "",
        "Exploitabilité (% des passages où l'élément est renseigné et valide : nomenclature, format,",
        "cohérence) :",
        "",
        grid(lambda row, item: _fmt_pct(row["items"][item]["exploitability_pct"]), r["items"]),
        "",
        "Anomalies de qualité : % des passages signalés, au total et par règle"
        + (" (règles rencontrées sur la période) :" if seen_rules else " : aucune sur la période."),
        "",
        grid(lambda row, col: _fmt_pct(row["flagged_pct"] if col == "Signalés" else row["flags"][col]["pct"]),
             ["Signalés"] + seen_rules),
    ]
    if seen_rules:
        parts += [""] + [f"  {rule} : {r['rule_labels'][rule]}" for rule in seen_rules]
    parts += ["", "Contrôle qualité des lots (Great Expectations), fichiers reçus du "
              f"{r['start']} au {r['end']} :" + ("" if r.get("gates") else " aucun fichier contrôlé."), ""]
    for g in r.get("gates", []):
        parts.append(f"  {g['finess']} {g['name']} : {g['files']} fichier(s) contrôlé(s), {g['files_failed']} avec "
                     f"indicateur(s) non atteint(s), {g['files_quarantined']} retenu(s)")
        for name, e in g["expectations"].items():
            parts.append(f"      [{name}] {e['files_failed']} fichier(s), {e['unexpected_count']} passage(s)"
                         + (" — bloquant" if e["blocking"] else ""))
    return "\n".join(parts) + "\n"


QUALITY_CSV = ["finess", "name", "measure", "key", "count", "denominator", "pct"]


def _quality_csv(r: dict) -> str:
    out = []
    for row in r["rows"]:
        head = [row["finess"], row["name"]]
        for item in r["items"]:
            m = row["items"][item]
            out.append(head + ["completeness", item, m["filled"], m["denominator"], m["completeness_pct"]])
            out.append(head + ["exploitability", item, m["valid"], m["denominator"], m["exploitability_pct"]])
        out.append(head + ["flagged", "ANY", row["flagged_visits"], row["visits"], row["flagged_pct"]])
        for rule in r["rules"]:
            f = row["flags"][rule]
            out.append(head + ["flagged", rule, f["visits"], row["visits"], f["pct"]])
    for g in r.get("gates", []):
        head = [g["finess"], g["name"]]
        out.append(head + ["gate_files_failed", "ANY", g["files_failed"], g["files"], _pct(g["files_failed"], g["files"])])
        out.append(head + ["gate_files_quarantined", "ANY", g["files_quarantined"], g["files"],
                           _pct(g["files_quarantined"], g["files"])])
        for name, e in g["expectations"].items():
            out.append(head + ["gate_files_failed", name, e["files_failed"], g["files"], _pct(e["files_failed"], g["files"])])
    return _csv(QUALITY_CSV, out)
