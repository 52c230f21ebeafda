"""What the concentrator sends: OSCOUR files to InVS/SpF, the flat ARS export, the anonymised ATIH files.

PostgreSQL selects, anonymises and orders the visits (include/sql/queries/export_*.sql); COPY ... TO STDOUT streams
them here one row at a time, and each row is written as one <PATIENT> line between a header and a footer:
memory does not grow with the number of visits. The ARS export is CSV written by COPY itself.

A `FileSpec` says what one file is (recipient, establishment, period, name) and how to build it; the DAGs
(through rpu.sends, with the send ledger) and `rpu export` (straight into a directory) use the same specs.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

from rpu import rpu_format as F
from rpu import store
from rpu.config import Region

COPY_CHUNK = 1 << 20


# --- periods ----------------------------------------------------------------------------------------------

def window(day: date, window_days: int) -> tuple[date, date]:
    """The sliding window sent on `day`: J-window_days … J-1 by entry date."""
    end = day - timedelta(days=1)
    return end - timedelta(days=window_days - 1), end


def atih_period(day: date, frequency: str) -> tuple[date, date]:
    """Cumulative since 1 January up to the end of the previous month (monthly) or week (weekly, Mon–Sun)."""
    if frequency == "weekly":
        end = day - timedelta(days=day.weekday() + 1)       # the Sunday before
    else:
        end = day.replace(day=1) - timedelta(days=1)       # the last day of the previous month
    return date(end.year, 1, 1), end


def months(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end] cut at month boundaries (a reprise sends one InVS file per month)."""
    out = []
    cur = start
    while cur <= end:
        nxt = (cur.replace(day=28) + timedelta(days=4)).replace(day=1)
        out.append((cur, min(end, nxt - timedelta(days=1))))
        cur = nxt
    return out


# --- streaming writers ------------------------------------------------------------------------------------

# The PATIENT items of an ATIH file: CODE_GEO and AGE stand for CP and NAISSANCE, COMMUNE is left out.
ATIH_ITEMS = tuple({"CP": "CODE_GEO", "NAISSANCE": "AGE"}.get(i, i) for i in F.ITEMS if i != "COMMUNE")

_LIST_BRACKETS = bytes.maketrans(b"\x01\x02", b"<>")      # rpu_xml_items' stand-ins for the children's < >
_NEEDS_CARE = re.compile(rb"[&<>\\]")                     # XML escaping, or a COPY escape (\t, \n, \\ …)
_COPY_ESCAPE = re.compile(rb"\\(.)")
_COPY_UNESCAPED = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b", b"f": b"\f", b"v": b"\v"}
_XML_ESCAPE = re.compile(rb"[&<>\t\n\r]")
_XML_ESCAPED = {b"&": b"&amp;", b"<": b"&lt;", b">": b"&gt;",
                # character references keep one visit per line, and a CR through XML's end-of-line handling
                b"\t": b"&#9;", b"\n": b"&#10;", b"\r": b"&#13;"}


def _patient_template(items: tuple[str, ...]) -> bytes:
    """`<PATIENT><CP>%s</CP>…</PATIENT>\n`: one line of a file, filled with the values of one visit."""
    return ("<PATIENT>" + "".join(f"<{i}>%s</{i}>" for i in items) + "</PATIENT>\n").encode()


def _careful_values(row: bytes) -> tuple[bytes, ...]:
    """The values of a COPY text row holding a COPY escape or a character to escape in XML (rare)."""
    return tuple(_XML_ESCAPE.sub(lambda m: _XML_ESCAPED[m.group()],
                                 _COPY_ESCAPE.sub(lambda m: _COPY_UNESCAPED[m.group(1)], v))
                 for v in row.split(b"\t"))


def _copy_visits(conn, query: str, params: dict, items: tuple[str, ...], out) -> int:
    """Write one <PATIENT> line per row of an export query (one text column per item, in `items` order) into
    `out`; returns the number of visits.

    PostgreSQL selects, anonymises and orders; COPY ... TO STDOUT streams one row per message, so memory does
    not grow with the number of visits. Lines are made here rather than by format() in SQL so that the server
    and this writer each take a core, each with about half of the work. A row whose values are plain (no tab,
    newline, backslash, &, <, >: nearly all) is split on tabs and its values written as they are."""
    template = _patient_template(items)
    n = 0
    write = out.write
    with conn.transaction():
        for statement in store.statements("export_session"):
            conn.execute(statement)
        with conn.cursor().copy(f"COPY ({query.rstrip().rstrip(';')}) TO STDOUT WITH (NULL '')", params) as copy:
            for data in copy:
                row = bytes(data)[:-1]
                values = _careful_values(row) if _NEEDS_CARE.search(row) else tuple(row.split(b"\t"))
                write((template % values).translate(_LIST_BRACKETS))
                n += 1
    return n


def _header(finess: str, start: date, end: date, extract: datetime) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<OSCOUR>\n<ETABLISSEMENT>'
            f"<FINESS>{finess}</FINESS><ORDRE>0</ORDRE><EXTRACT>{extract:%d/%m/%Y %H:%M:%S}</EXTRACT>"
            f"<DATEDEBUT>{F.format_date(start)}</DATEDEBUT><DATEFIN>{F.format_date(end)}</DATEFIN>"
            "</ETABLISSEMENT>\n<PASSAGES>\n").encode()


_FOOTER = b"</PASSAGES>\n</OSCOUR>\n"


def _write_rpu_file(conn, path: Path, query_name: str, items: tuple[str, ...], etab: str, start: date, end: date,
                    extract: datetime) -> int:
    """An RPU 2006 file (UTF-8, declared): the header, then the visits as selected by the named query."""
    with open(path, "wb", buffering=COPY_CHUNK) as out:
        out.write(_header(etab, start, end, extract))
        n = _copy_visits(conn, store.query(query_name), {"etab": etab, "start": start, "end": end}, items, out)
        out.write(_FOOTER)
    return n


def write_oscour(conn, path: Path, etab: str, start: date, end: date, extract: datetime) -> int:
    """OSCOUR file of an establishment's stored visits entered in [start, end]."""
    return _write_rpu_file(conn, path, "export_oscour", F.ITEMS, etab, start, end, extract)


def write_atih(conn, path: Path, etab: str, start: date, end: date, extract: datetime) -> int:
    """Anonymised RPU file for ATIH (CODE_GEO and AGE instead of CP, COMMUNE and NAISSANCE)."""
    return _write_rpu_file(conn, path, "export_atih", ATIH_ITEMS, etab, start, end, extract)


def write_ars(conn, path: Path, start: date, end: date, *, identifying: bool, etab: str | None = None) -> int:
    """Gzipped CSV (UTF-8, `;`, header), one row per visit; returns the number of visits."""
    fmt = {"identifying": 'commune AS "COMMUNE", to_char(naissance, \'YYYY-MM-DD\') AS "NAISSANCE",'
           if identifying else ""}
    with gzip.open(path, "wb", compresslevel=6) as out:
        text = store.query("export_ars").format(**fmt).rstrip().rstrip(";")
        n = -1   # the header line
        with conn.cursor().copy(f"COPY ({text}) TO STDOUT WITH (FORMAT csv, HEADER true, DELIMITER ';')",
                                {"start": start, "end": end, "etab": etab}) as copy:
            for data in copy:
                out.write(data)
                n += bytes(data).count(b"\n")
    return max(n, 0)


def counts(conn, start: date, end: date, etab: str | None = None) -> dict[str, dict[str, int]]:
    """Visits per establishment and entry day over a period (manifests, reports)."""
    out: dict[str, dict[str, int]] = {}
    for e, d, n in conn.execute(store.query("export_counts"), {"start": start, "end": end, "etab": etab}):
        out.setdefault(e.strip(), {})[d.isoformat()] = n
    return out


# --- what is sent -----------------------------------------------------------------------------------------

@dataclass
class FileSpec:
    """One file for one recipient: what it holds and how to build it."""
    recipient: str                       # invs | ars | atih
    kind: str                            # daily | cumulative | reprise
    etab: str | None                     # None: region-wide (ARS)
    start: date
    end: date
    file_name: str
    build: Callable = field(repr=False)  # build(conn, path) -> number of visits
    manifest: bool = False               # a <file>.manifest.json goes with it

    def slot(self) -> dict:
        return {"recipient": self.recipient, "kind": self.kind, "etab": self.etab, "period_start": self.start,
                "period_end": self.end, "file_name": self.file_name}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_bytes(spec: FileSpec, visits: int, sha256: str, conn, region: Region) -> bytes:
    """The small JSON that travels with a file: counts (total, per establishment and day), checksum."""
    return json.dumps({
        "region": region.code, "recipient": spec.recipient, "kind": spec.kind, "file": spec.file_name,
        "finess": spec.etab, "period_start": spec.start.isoformat(), "period_end": spec.end.isoformat(),
        "visits": visits, "sha256": sha256, "per_day": counts(conn, spec.start, spec.end, spec.etab),
    }, ensure_ascii=False, indent=1).encode("utf-8")


def _extract(day: date) -> datetime:
    """EXTRACT of a file sent for `day`: derived from the day, not the clock, so a retry rebuilds it equal."""
    return datetime(day.year, day.month, day.day)


def invs_specs(region: Region, day: date, etabs=None) -> list[FileSpec]:
    """The daily OSCOUR files sent on `day`: one per active establishment, the sliding window."""
    start, end = window(day, region.window_days)
    return [FileSpec("invs", "daily", e, start, end, f"RPU_{e}_{start:%Y%m%d}_{end:%Y%m%d}.xml",
                     lambda conn, path, e=e: write_oscour(conn, path, e, start, end, _extract(day)))
            for e in (etabs if etabs is not None else [x.finess for x in region.active])]


def ars_specs(region: Region, day: date) -> list[FileSpec]:
    """The daily ARS export of `day`: the whole region (shadow establishments included), the window."""
    start, end = window(day, region.window_days)
    return [FileSpec("ars", "daily", None, start, end, f"ARS_{region.code}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz",
                     lambda conn, path: write_ars(conn, path, start, end, identifying=region.ars_identifying),
                     manifest=True)]


def _atih_builder(region: Region, etab: str, start: date, end: date, extract: datetime) -> Callable:
    def build(conn, path: Path) -> int:
        from rpu import geo

        geo.ensure_loaded(conn, region.geo_table)   # the region's postal code → PMSI code table, current
        return write_atih(conn, path, etab, start, end, extract)
    return build


def atih_specs(region: Region, day: date, etabs=None) -> list[FileSpec]:
    """The cumulative ATIH files sent on `day`: one per active establishment, 1 January → end of period."""
    start, end = atih_period(day, region.atih_frequency)
    return [FileSpec("atih", "cumulative", e, start, end, f"ATIH_RPU_{e}_{start:%Y%m%d}_{end:%Y%m%d}.xml",
                     _atih_builder(region, e, start, end, _extract(day)), manifest=True)
            for e in (etabs if etabs is not None else [x.finess for x in region.active])]


def reprise_specs(region: Region, etab: str, start: date, end: date, recipients, today: date) -> list[FileSpec]:
    """A reprise: InVS one file per month of the period; ATIH the cumulative file of the end date's year up to
    the end date; ARS the flat export of the establishment over the period."""
    specs: list[FileSpec] = []
    if "invs" in recipients:
        for a, b in months(start, end):
            specs.append(FileSpec("invs", "reprise", etab, a, b, f"RPU_{etab}_{a:%Y%m%d}_{b:%Y%m%d}_reprise.xml",
                                  lambda conn, path, a=a, b=b: write_oscour(conn, path, etab, a, b, _extract(today))))
    if "atih" in recipients:
        a = date(end.year, 1, 1)
        specs.append(FileSpec("atih", "reprise", etab, a, end, f"ATIH_RPU_{etab}_{a:%Y%m%d}_{end:%Y%m%d}_reprise.xml",
                              _atih_builder(region, etab, a, end, _extract(today)), manifest=True))
    if "ars" in recipients:
        specs.append(FileSpec("ars", "reprise", etab, start, end,
                              f"ARS_{region.code}_{etab}_{start:%Y%m%d}_{end:%Y%m%d}_reprise.csv.gz",
                              lambda conn, path: write_ars(conn, path, start, end, identifying=region.ars_identifying,
                                                           etab=etab), manifest=True))
    return specs


SPECS = {"invs": invs_specs, "ars": ars_specs, "atih": atih_specs}


def daily_items(region: Region, recipient: str, day: date) -> list[dict]:
    """The files a scheduled send of `day` makes, as small JSON-able items (one mapped task each)."""
    return [{"recipient": recipient, "day": day.isoformat(), "etab": s.etab, "file_name": s.file_name}
            for s in SPECS[recipient](region, day)]


def spec_of(region: Region, item: dict) -> FileSpec:
    """Back from an item of daily_items to its FileSpec."""
    day = date.fromisoformat(item["day"])
    specs = SPECS[item["recipient"]](region, day)
    return next(s for s in specs if s.file_name == item["file_name"])


def write_to_dir(conn, region: Region, specs: list[FileSpec], out_dir: Path) -> list[dict]:
    """Build files into a directory, as `rpu export` does (no ledger, nothing sent)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for spec in specs:
        path = out_dir / spec.file_name
        visits = spec.build(conn, path)
        sha = sha256_file(path)
        if spec.manifest:
            (out_dir / f"{spec.file_name}.manifest.json").write_bytes(manifest_bytes(spec, visits, sha, conn, region))
        done.append({"file": str(path), "visits": visits, "sha256": sha, "finess": spec.etab,
                     "period_start": spec.start.isoformat(), "period_end": spec.end.isoformat()})
    return done
