"""What the concentrator sends: OSCOUR files to InVS/SpF, the flat ARS export, the anonymised ATIH files.

PostgreSQL selects, anonymises and orders the visits (include/sql/queries/export_*.sql); COPY ... TO STDOUT streams
them here one row at a time, and each row is written as one <PATIENT> line between a header and a footer:
memory does not grow with the number of visits. The ARS export is CSV written by COPY itself. The counts of a
file's manifest are taken from the very rows written, in the same pass.

Which files: one per FINESS_ordre (the establishment's FINESS and the ORDRE of its files, ATIH's unit) that has
data, and a file declares only days it really provides (`declared`): a day no stored file provides is "no
data", not "no visits", and a day whose stored data is held back (view held_back_file: quarantined by the
quality gate) is left to what the recipient already has. The OSCOUR files' period is split around such days;
the ATIH file, cumulative from 1 January, ends the day before the first held-back day.

A `FileSpec` says what one file is (recipient, kind, FINESS_ordre, period, name); `build` writes it. The DAGs
(through rpu.sends, with the send ledger), the reprise and `rpu export` use the same specs. Planning reads the
database (which FINESS_ordre have data, which days are held back); a spec is then a small JSON-able item, so a
retry of a mapped task rebuilds the very same slot.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from rpu import rpu_format as F
from rpu import geo, store
from rpu.config import Region

log = logging.getLogger(__name__)

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


def closing_year(day: date, frequency: str) -> int | None:
    """The year whose closing file (1 January–31 December) an ATIH run of `day` also sends, if any.

    Every run of January sends the closing file of the previous year, and so does the first run after January
    (the first of February when monthly, a Monday of 1–7 February when weekly): days of the year's end reach
    ATIH even when the regular period of the run starts on 1 January (weekly), and corrections of December
    that arrive in January (the sliding window, late files) are in the last one."""
    if day.month == 1 or (day.month == 2 and (frequency == "monthly" or day.day <= 7)):
        return day.year - 1
    return None


def months(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end] cut at month boundaries (a reprise sends one InVS file per month)."""
    out = []
    cur = start
    while cur <= end:
        nxt = (cur.replace(day=28) + timedelta(days=4)).replace(day=1)
        out.append((cur, min(end, nxt - timedelta(days=1))))
        cur = nxt
    return out


def periods(days) -> list[tuple[date, date]]:
    """Sorted days → runs of consecutive days, as (first, last)."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and d == out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


@dataclass
class Days:
    """What the stored data says about the days of a period, for one FINESS_ordre."""
    provided: list[date] = field(default_factory=list)   # a stored file provides the day and is not held back
    held: list[date] = field(default_factory=list)       # the day's stored data is held back


def declared(conn, etabs: list[str] | None, start: date, end: date) -> dict[tuple[str, int], Days]:
    """(FINESS, ORDRE) → its provided and held-back days in [start, end], for every FINESS_ordre with data
    (etabs None: every establishment). See export_days.sql."""
    out: dict[tuple[str, int], Days] = {}
    for etab, ordre, day, held in conn.execute(store.query("export_days"),
                                               {"etabs": list(etabs) if etabs is not None else None,
                                                "start": start, "end": end}):
        d = out.setdefault((etab.strip(), ordre), Days())
        (d.held if held else d.provided).append(day)
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


class HeldBackError(RuntimeError):
    """A day a file was planned to declare became held back before it was built: plan again."""


@dataclass
class Written:
    """What a build wrote, counted from the very rows written: the manifest and the ledger take it from here."""
    visits: int
    per_day: dict                           # ISO day → visits (ARS: "FINESS_ORDRE" → ISO day → visits)
    extract: datetime                       # the EXTRACT of the header: when the file was built (local time)
    held_back: list[date] = field(default_factory=list)
    days: dict = field(default_factory=dict)   # ARS: "FINESS_ORDRE" → {"days": [...], "held_back": [...]}


def _patient_template(items: tuple[str, ...]) -> bytes:
    """`<PATIENT><CP>%s</CP>…</PATIENT>\n`: one line of a file, filled with the values of one visit."""
    return ("<PATIENT>" + "".join(f"<{i}>%s</{i}>" for i in items) + "</PATIENT>\n").encode()


def _careful_values(row: bytes) -> tuple[bytes, ...]:
    """The values of a COPY text row holding a COPY escape or a character to escape in XML (rare)."""
    return tuple(_XML_ESCAPE.sub(lambda m: _XML_ESCAPED[m.group()],
                                 _COPY_ESCAPE.sub(lambda m: _COPY_UNESCAPED[m.group(1)], v))
                 for v in row.split(b"\t"))


def _iso(fr_day: bytes) -> str:
    """b'31/12/2026' (the date of ENTREE as exported) → '2026-12-31'."""
    return f"{fr_day[6:10].decode()}-{fr_day[3:5].decode()}-{fr_day[0:2].decode()}"


def _copy_visits(conn, query: str, params: dict, items: tuple[str, ...], out) -> tuple[int, dict[str, int]]:
    """Write one <PATIENT> line per row of an export query (one text column per item, in `items` order) into
    `out`; returns the number of visits and, when the items hold ENTREE, the visits per entry day.

    PostgreSQL selects, anonymises and orders; COPY ... TO STDOUT streams one row per message, so memory does
    not grow with the number of visits. Lines are made here rather than by format() in SQL so that the server
    and this writer each take a core, each with about half of the work. A row whose values are plain (no tab,
    newline, backslash, &, <, >: nearly all) is split on tabs and its values written as they are. Rows come in
    entry-day order: a day's count is the length of its run of rows, counted as they are written."""
    template = _patient_template(items)
    k = items.index("ENTREE") if "ENTREE" in items else 0   # without ENTREE: one run per first value, unused
    runs: list[tuple[bytes, int]] = []                      # (entry day, visits), one per run of rows
    day, run = b"", 0
    write = out.write
    care = _NEEDS_CARE.search
    brackets = _LIST_BRACKETS
    with conn.transaction():
        for statement in store.statements("export_session"):
            conn.execute(statement)
        with conn.cursor().copy(f"COPY ({query.rstrip().rstrip(';')}) TO STDOUT WITH (NULL '')", params) as copy:
            for data in copy:
                row = bytes(data)[:-1]
                values = _careful_values(row) if care(row) else tuple(row.split(b"\t"))
                write((template % values).translate(brackets))
                d = values[k][:10]
                if d == day:
                    run += 1
                else:
                    runs.append((day, run))
                    day, run = d, 1
    runs.append((day, run))
    n = sum(c for _, c in runs)
    if "ENTREE" not in items:
        return n, {}
    per_day: dict[str, int] = {}
    for d, c in runs[1:]:
        per_day[_iso(d)] = per_day.get(_iso(d), 0) + c
    return n, dict(sorted(per_day.items()))


def _header(finess: str, ordre: int, start: date, end: date, extract: datetime) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<OSCOUR>\n<ETABLISSEMENT>'
            f"<FINESS>{finess}</FINESS><ORDRE>{ordre}</ORDRE><EXTRACT>{extract:%d/%m/%Y %H:%M:%S}</EXTRACT>"
            f"<DATEDEBUT>{F.format_date(start)}</DATEDEBUT><DATEFIN>{F.format_date(end)}</DATEFIN>"
            "</ETABLISSEMENT>\n<PASSAGES>\n").encode()


_FOOTER = b"</PASSAGES>\n</OSCOUR>\n"


def _snapshot(conn) -> None:
    """Make the current transaction read one snapshot: its checks and its COPY see the same data."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _write_rpu_file(conn, path: Path, query_name: str, items: tuple[str, ...], etab: str, ordre: int,
                    start: date, end: date, extract: datetime) -> Written:
    """An RPU 2006 file (UTF-8, declared): the header, then the visits as selected by the named query. The
    period must hold no held-back day (checked in the snapshot the visits are read from)."""
    with conn.transaction():
        _snapshot(conn)
        held = declared(conn, [etab], start, end).get((etab, ordre), Days()).held
        if held:
            raise HeldBackError(f"{path.name}: the data of {', '.join(map(str, held))} ({etab} ordre {ordre}) was "
                                "held back after the send was planned: run the send again to plan it anew")
        with open(path, "wb", buffering=COPY_CHUNK) as out:
            out.write(_header(etab, ordre, start, end, extract))
            n, per_day = _copy_visits(conn, store.query(query_name),
                                      {"etab": etab, "ordre": ordre, "start": start, "end": end}, items, out)
            out.write(_FOOTER)
    return Written(n, per_day, extract)


def write_oscour(conn, path: Path, etab: str, ordre: int, start: date, end: date, extract: datetime) -> Written:
    """OSCOUR file of one FINESS_ordre's stored visits entered in [start, end]."""
    return _write_rpu_file(conn, path, "export_oscour", F.ITEMS, etab, ordre, start, end, extract)


def write_atih(conn, path: Path, etab: str, ordre: int, start: date, end: date, extract: datetime) -> Written:
    """Anonymised RPU file for ATIH (CODE_GEO and AGE instead of CP, COMMUNE and NAISSANCE)."""
    return _write_rpu_file(conn, path, "export_atih", ATIH_ITEMS, etab, ordre, start, end, extract)


def write_ars(conn, path: Path, start: date, end: date, *, identifying: bool, extract: datetime,
              etab: str | None = None) -> Written:
    """Gzipped CSV (UTF-8, `;`, header), one row per visit, ORDRE after FINESS. The counts per FINESS_ordre and
    entry day are read from the rows as they are written; the days each FINESS_ordre provides and those held
    back come from the same snapshot."""
    fmt = {"identifying": 'commune AS "COMMUNE", to_char(naissance, \'YYYY-MM-DD\') AS "NAISSANCE",'
           if identifying else ""}
    text = store.query("export_ars").format(**fmt).rstrip().rstrip(";")
    counts: dict[str, dict[str, int]] = {}
    n = 0
    with conn.transaction():
        _snapshot(conn)
        days = declared(conn, [etab] if etab else None, start, end)
        with gzip.open(path, "wb", compresslevel=6) as out, \
                conn.cursor().copy(f"COPY ({text}) TO STDOUT WITH (FORMAT csv, HEADER true, DELIMITER ';')",
                                   {"start": start, "end": end, "etab": etab}) as copy:
            def records():
                for data in copy:            # one CSV record per message (a quoted value may hold a newline)
                    out.write(data)
                    yield bytes(data).decode("utf-8")

            reader = csv.reader(records(), delimiter=";")
            entree = next(reader).index("ENTREE")
            for rec in reader:
                per = counts.setdefault(f"{rec[0]}_{rec[1]}", {})
                per[rec[entree][:10]] = per.get(rec[entree][:10], 0) + 1
                n += 1
    held = sorted({d for v in days.values() for d in v.held})
    return Written(n, counts, extract, held,
                   {f"{e}_{o}": {"days": [x.isoformat() for x in v.provided],
                                 "held_back": [x.isoformat() for x in v.held]} for (e, o), v in sorted(days.items())})


# --- what is sent -----------------------------------------------------------------------------------------

@dataclass
class FileSpec:
    """One file for one recipient: what it holds. `build` writes it."""
    recipient: str                       # invs | ars | atih
    kind: str                            # daily | cumulative | closing | reprise
    etab: str | None                     # None: region-wide (ARS)
    ordre: int | None                    # the ORDRE of the FINESS_ordre; None: every one (ARS)
    start: date
    end: date
    file_name: str
    held_back: tuple[date, ...] = ()     # days of the requested period left out: their data is held back
    manifest: bool = False               # a <file>.manifest.json goes with it

    def slot(self) -> dict:
        return {"recipient": self.recipient, "kind": self.kind, "etab": self.etab, "ordre": self.ordre,
                "period_start": self.start, "period_end": self.end, "file_name": self.file_name}

    def item(self) -> dict:
        """JSON-able (one mapped task each); `from_item` gives the spec back."""
        return {"recipient": self.recipient, "kind": self.kind, "etab": self.etab, "ordre": self.ordre,
                "start": self.start.isoformat(), "end": self.end.isoformat(), "file_name": self.file_name,
                "held_back": [d.isoformat() for d in self.held_back], "manifest": self.manifest}

    @classmethod
    def from_item(cls, item: dict) -> "FileSpec":
        return cls(item["recipient"], item["kind"], item["etab"], item["ordre"], date.fromisoformat(item["start"]),
                   date.fromisoformat(item["end"]), item["file_name"],
                   tuple(date.fromisoformat(d) for d in item.get("held_back", ())), item.get("manifest", False))


def local_now(region: Region) -> datetime:
    """The EXTRACT of a file built now: the region's local time, to the second. A run for a past date builds a
    file younger than anything sent before, so a recipient applying EXTRACT precedence takes it."""
    return datetime.now(region.tz).replace(tzinfo=None, microsecond=0)


def build(conn, region: Region, spec: FileSpec, path: Path) -> Written:
    """Write the file of `spec` at `path`; its EXTRACT is now."""
    extract = local_now(region)
    if spec.recipient == "ars":
        return write_ars(conn, path, spec.start, spec.end, identifying=region.sends.ars_identifying, extract=extract,
                         etab=spec.etab)
    writer = write_oscour if spec.recipient == "invs" else write_atih
    w = writer(conn, path, spec.etab, spec.ordre, spec.start, spec.end, extract)
    w.held_back = list(spec.held_back)
    return w


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_bytes(region: Region, spec: FileSpec, written: Written, sha256: str) -> bytes:
    """The small JSON that travels with a file: its counts (those of the rows written), checksum, EXTRACT, and
    the days of the requested period left out because their data is held back."""
    doc = {"region": region.code, "recipient": spec.recipient, "kind": spec.kind, "file": spec.file_name,
           "finess": spec.etab, "ordre": spec.ordre, "period_start": spec.start.isoformat(),
           "period_end": spec.end.isoformat(), "extract": written.extract.isoformat(sep=" "),
           "visits": written.visits, "sha256": sha256, "per_day": written.per_day,
           "held_back": [d.isoformat() for d in written.held_back]}
    if written.days:
        doc["finess_ordre"] = written.days
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def _oscour_specs(conn, kind: str, etabs, start: date, end: date, *, cut=lambda a, b: [(a, b)],
                  suffix: str = "") -> list[FileSpec]:
    """OSCOUR files of the FINESS_ordre of `etabs` over [start, end]: one per run of provided days (cut by
    `cut`, e.g. per month), never over a held-back or unprovided day."""
    specs = []
    for (etab, ordre), d in sorted(declared(conn, etabs, start, end).items()):
        for a, b in periods(d.provided):
            for pa, pb in cut(a, b):
                specs.append(FileSpec("invs", kind, etab, ordre, pa, pb,
                                      f"RPU_{etab}_{ordre}_{pa:%Y%m%d}_{pb:%Y%m%d}{suffix}.xml", tuple(d.held)))
        if d.held:
            log.warning("%s ordre %s: held-back days left out of the InVS files: %s", etab, ordre,
                        ", ".join(map(str, d.held)))
    return specs


def _atih_specs(conn, kind: str, etabs, start: date, end: date, suffix: str = "") -> list[FileSpec]:
    """Cumulative ATIH files from `start` (1 January) to `end`, one per FINESS_ordre with data in the period,
    ending the day before its first held-back day (a cumulative file has one period)."""
    specs = []
    for (etab, ordre), d in sorted(declared(conn, etabs, start, end).items()):
        last = min(end, min(d.held) - timedelta(days=1)) if d.held else end
        if d.held:
            log.warning("%s ordre %s: ATIH file %s ends %s, before held-back days %s", etab, ordre, kind, last,
                        ", ".join(map(str, d.held)))
        if not any(x <= last for x in d.provided):
            continue                               # nothing it may declare: the recipient keeps what it has
        specs.append(FileSpec("atih", kind, etab, ordre, start, last,
                              f"ATIH_RPU_{etab}_{ordre}_{start:%Y%m%d}_{last:%Y%m%d}{suffix}.xml", tuple(d.held),
                              manifest=True))
    return specs


def check_geo(conn, region: Region, specs: list[FileSpec]) -> None:
    """Before any ATIH file is built: the region's postal code table loaded if its file changed, then refused
    when empty or not matching the visits (rpu.geo)."""
    atih = [s for s in specs if s.recipient == "atih"]
    if not atih:
        return
    geo.ensure_loaded(conn, region.atih.geo_table)
    figures = geo.check_coverage(conn, region, sorted({s.etab for s in atih}), min(s.start for s in atih),
                                 max(s.end for s in atih))
    log.info("postal code table: %(matched)s of %(eligible)s French postal codes mapped (%(share).1f %%, %(table)s)",
             figures | {"share": figures["share"] * 100})


def _active(region: Region, etabs) -> list[str]:
    return list(etabs) if etabs is not None else [x.finess for x in region.active]


def invs_specs(conn, region: Region, day: date, etabs=None) -> list[FileSpec]:
    """The daily OSCOUR files sent on `day`: for each FINESS_ordre of an active establishment, its provided days
    of the sliding window (one file per run of them)."""
    start, end = window(day, region.sends.window_days)
    return _oscour_specs(conn, "daily", _active(region, etabs), start, end)


def ars_specs(conn, region: Region, day: date) -> list[FileSpec]:
    """The daily ARS export of `day`: the whole region (shadow establishments included), the window."""
    start, end = window(day, region.sends.window_days)
    return [FileSpec("ars", "daily", None, None, start, end, f"ARS_{region.code}_{start:%Y%m%d}_{end:%Y%m%d}.csv.gz",
                     manifest=True)]


def atih_specs(conn, region: Region, day: date, etabs=None) -> list[FileSpec]:
    """The ATIH files sent on `day`: per FINESS_ordre of an active establishment, the cumulative file from
    1 January to the end of the period, and in January (and the first run after it) the closing file of the
    previous year (see closing_year)."""
    etabs = _active(region, etabs)
    start, end = atih_period(day, region.atih.frequency)
    specs = _atih_specs(conn, "cumulative", etabs, start, end)
    year = closing_year(day, region.atih.frequency)
    if year is not None and (start, end) != (date(year, 1, 1), date(year, 12, 31)):
        specs += _atih_specs(conn, "closing", etabs, date(year, 1, 1), date(year, 12, 31))
    check_geo(conn, region, specs)
    return specs


def reprise_specs(conn, region: Region, etab: str, start: date, end: date, recipients) -> list[FileSpec]:
    """A reprise: InVS one file per month of the period (and per run of provided days); ATIH the cumulative
    file of the end date's year up to the end date; ARS the flat export of the establishment over the period."""
    specs: list[FileSpec] = []
    if "invs" in recipients:
        specs += _oscour_specs(conn, "reprise", [etab], start, end, cut=months, suffix="_reprise")
    if "atih" in recipients:
        specs += _atih_specs(conn, "reprise", [etab], date(end.year, 1, 1), end, suffix="_reprise")
    if "ars" in recipients:
        specs.append(FileSpec("ars", "reprise", etab, None, start, end,
                              f"ARS_{region.code}_{etab}_{start:%Y%m%d}_{end:%Y%m%d}_reprise.csv.gz", manifest=True))
    check_geo(conn, region, specs)
    return specs


SPECS = {"invs": invs_specs, "ars": ars_specs, "atih": atih_specs}


def daily_items(conn, region: Region, recipient: str, day: date) -> list[dict]:
    """The files a scheduled send of `day` makes, as small JSON-able items (one mapped task each)."""
    return [s.item() for s in SPECS[recipient](conn, region, day)]


def spec_of(item: dict) -> FileSpec:
    """Back from an item of daily_items to its FileSpec."""
    return FileSpec.from_item(item)


def write_to_dir(conn, region: Region, specs: list[FileSpec], out_dir: Path) -> list[dict]:
    """Build files into a directory, as `rpu export` does (no ledger, nothing sent)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for spec in specs:
        path = out_dir / spec.file_name
        written = build(conn, region, spec, path)
        sha = sha256_file(path)
        if spec.manifest:
            (out_dir / f"{spec.file_name}.manifest.json").write_bytes(manifest_bytes(region, spec, written, sha))
        done.append({"file": str(path), "visits": written.visits, "sha256": sha, "finess": spec.etab,
                     "ordre": spec.ordre, "period_start": spec.start.isoformat(), "period_end": spec.end.isoformat(),
                     "held_back": [d.isoformat() for d in written.held_back]})
    return done
