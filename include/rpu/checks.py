"""Acceptance (reject) and quality (flag) rules, applied while the file streams by.

FEDORU: a file is rejected only for a file-level rule (not well-formed / not conformant, FINESS missing,
unknown or not the sender's, EXTRACT missing); a visit without a usable ENTREE — or, in this project, with
an ENTREE outside the period the file declares, since the replacement rule could not place it — is rejected
alone; every other problem is a quality flag on a stored visit. Rule names and words live in rpu.problems.
"""
from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Protocol

from rpu import rpu_format as F
from rpu import visit_table
from rpu.config import PERIOD_MARGIN_DAYS, Region
from rpu.parse import FileRejected, Header, RawVisit, RpuReader, reader_for
from rpu.problems import Problem

MAX_DURATION = timedelta(hours=F.MAX_DURATION_HOURS)
DOMAIN_SETS = {item: frozenset(values) for item, values in F.DOMAINS.items()}
DOMAIN_RULES = {item: f"{item}_DOMAIN" for item in F.DOMAINS}
DOMAIN_CHECKS = tuple((item, DOMAIN_SETS[item], DOMAIN_RULES[item]) for item in F.DOMAINS)


def _cim10_ok(code: str) -> bool:
    # most codes are written without dot or space: test them as they are first
    return bool(F.cim10(code) or F.cim10(F.normalise_code(code)))
PROGRESS_EVERY = 10_000
MAX_REPORTED_VISIT_ERRORS = 200   # receipts list this many rejected visits in detail; all are stored

# Column order of a checked visit row (the staging table of include/sql, the COPY writer, the exporters).
VISIT_COLUMNS = visit_table.VISIT_COLUMNS


@dataclass
class FileHeader:
    """The header once checked: who sent what, for which period."""
    finess: str                 # as written in the file (ET or EJ)
    etab: str                   # the establishment's ET FINESS (the sender's directory when known)
    ordre: int
    extract: datetime
    period_start: date | None   # None: derived from the entry dates
    period_end: date | None


class VisitSink(Protocol):
    def visit(self, row: tuple) -> None: ...
    def rejected(self, raw: RawVisit, problem: Problem) -> None: ...


@dataclass
class FileReport:
    """What happened to one file, without patient data: counts, dates, FINESS, rules."""
    file: str
    accepted: bool = True
    finess: str | None = None
    etab: str | None = None
    ordre: int | None = None
    extract: datetime | None = None
    period_start: date | None = None
    period_end: date | None = None
    visits: int = 0
    visits_rejected: int = 0
    visits_flagged: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    flags: Counter = field(default_factory=Counter)
    per_day: Counter = field(default_factory=Counter)   # accepted visits per entry date

    @property
    def visits_accepted(self) -> int:
        return self.visits - self.visits_rejected

    def as_dict(self) -> dict:
        """The JSON shape of `rpu validate --json` and of receipts."""
        return {
            "file": self.file,
            "accepted": self.accepted,
            "finess": self.finess,
            "etab": self.etab,
            "ordre": self.ordre,
            "extract": self.extract.isoformat(sep=" ") if self.extract else None,
            "period_start": self.period_start.isoformat() if self.period_start else None,
            "period_end": self.period_end.isoformat() if self.period_end else None,
            "visits": self.visits,
            "visits_accepted": self.visits_accepted if self.accepted else 0,
            "visits_rejected": self.visits_rejected,
            "visits_flagged": self.visits_flagged,
            "errors": [p.as_dict() for p in self.errors],
            "warnings": [p.as_dict() for p in self.warnings],
            "flags": dict(sorted(self.flags.items())),
            "per_day": {d.isoformat(): n for d, n in sorted(self.per_day.items())},
        }


def check_header(h: Header, region: Region | None, sender: str | None) -> tuple[FileHeader, list[Problem]]:
    """File-level rules on the ETABLISSEMENT block; raises FileRejected."""
    warnings: list[Problem] = []
    line = h.line or None
    if not h.finess:
        raise FileRejected(Problem("FINESS_MISSING", "l'en-tête ETABLISSEMENT ne contient pas de FINESS", line=line))
    etab = h.finess
    if region is not None:
        est = region.establishment(h.finess)
        if est is None:
            raise FileRejected(Problem("FINESS_UNKNOWN", f"le FINESS {h.finess} n'est pas déclaré dans la région "
                                       f"{region.name} : contactez l'ARS ou l'ORU", line=line))
        etab = est.finess
        sites = region.establishments_of(h.finess)
        if sender is None and len(sites) > 1:
            raise FileRejected(Problem(
                "FINESS_NOT_SENDER", f"le FINESS {h.finess} est celui de l'entité juridique de plusieurs sites ("
                + ", ".join(e.finess for e in sites) + ") : indiquez le site déposant (--sender)", line=line))
        if sender is not None:
            own = region.establishment(sender)
            if own is None or h.finess not in own.identifiers:
                raise FileRejected(Problem(
                    "FINESS_NOT_SENDER",
                    f"le FINESS {h.finess} ({est.name}) n'est pas celui de l'établissement qui a déposé le fichier "
                    f"({sender}{' – ' + own.name if own else ''})", line=line))
            etab = own.finess
    elif sender is not None:
        etab = sender
    extract = F.parse_datetime(h.extract)
    if extract is None:
        what = "absente" if not h.extract else f"illisible ({h.extract!r}, attendu JJ/MM/AAAA HH:MM:SS)"
        raise FileRejected(Problem("EXTRACT_MISSING", f"date d'extraction EXTRACT {what}", line=line))
    ordre = 0
    if h.ordre:
        try:
            ordre = int(h.ordre)
        except ValueError:
            warnings.append(Problem("ORDRE_INVALID", f"ORDRE {_shown(h.ordre)} n'est pas un nombre : 0 retenu",
                                    line=line))
        else:
            if not 0 <= ordre <= F.MAX_ORDRE:
                raise FileRejected(Problem("ORDRE_OUT_OF_RANGE", f"ORDRE {_shown(h.ordre)} hors de l'intervalle "
                                           f"0–{F.MAX_ORDRE} (en général 0)", line=line))
    start, end = F.parse_date(h.datedebut), F.parse_date(h.datefin)
    for name, raw, parsed in (("DATEDEBUT", h.datedebut, start), ("DATEFIN", h.datefin, end)):
        if raw and parsed is None:
            warnings.append(Problem("PERIOD_INVALID", f"{name} {raw!r} illisible : période déduite des entrées",
                                    line=line))
    if start and end and end < start:
        warnings.append(Problem("PERIOD_INVALID", f"DATEFIN {h.datefin} avant DATEDEBUT {h.datedebut} : période "
                                "déduite des entrées", line=line))
        start = end = None
    return FileHeader(h.finess, etab, ordre, extract, start, end), warnings


def _shown(value: str, limit: int = 40) -> str:
    """A header value quoted in a message, cut short (a header item has no length limit of its own)."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def check_visit(raw: RawVisit, start: date | None, end: date | None) -> tuple[tuple | None, Problem | None]:
    """(row, None) for a storable visit, its flags inside the row; (None, problem) for a rejected one."""
    if raw.too_long is not None:
        return None, Problem("ITEM_TOO_LONG", f"élément {raw.too_long} de plus de {F.MAX_ITEM_CHARS} caractères : "
                             "passage non enregistré", raw.line, raw.idx)
    items = raw.items
    get = items.get
    entree_s = get("ENTREE", "")
    if not entree_s:
        return None, Problem("ENTREE_MISSING", "passage sans date d'entrée (ENTREE vide) : non enregistré",
                             raw.line, raw.idx)
    entree = F.parse_datetime(entree_s)
    if entree is None:
        return None, Problem("ENTREE_INVALID", f"date d'entrée {entree_s!r} illisible (attendu JJ/MM/AAAA HH:MM) : "
                             "passage non enregistré", raw.line, raw.idx)
    day = entree.date()
    if (start is not None and day < start) or (end is not None and day > end):
        return None, Problem("ENTREE_OUTSIDE_PERIOD", f"entrée le {day:%d/%m/%Y}, hors de la période du fichier "
                             f"({F.format_date(start) or '…'} – {F.format_date(end) or '…'}) : passage non enregistré",
                             raw.line, raw.idx)
    flags: list[str] = []
    raw_invalid: dict[str, str] = {}
    cp = get("CP", "")
    if cp and not F.postal_code(cp):
        flags.append("CP_FORMAT")
    naissance_s = get("NAISSANCE", "")
    naissance = F.parse_date(naissance_s) if naissance_s else None
    if naissance_s and naissance is None:
        flags.append("NAISSANCE_INVALID")
        raw_invalid["NAISSANCE"] = naissance_s
    elif naissance is not None:
        age = F.age_years(naissance, day)
        if age < 0 or age > F.MAX_AGE_YEARS:
            flags.append("AGE_RANGE")
    for item, allowed, rule in DOMAIN_CHECKS:
        v = get(item)
        if v and v not in allowed:
            flags.append(rule)
    mode_e = get("MODE_ENTREE", "")
    prov = get("PROVENANCE", "")
    if prov and mode_e in F.PROVENANCE_BY_MODE_ENTREE and prov not in F.PROVENANCE_BY_MODE_ENTREE[mode_e]:
        flags.append("PROVENANCE_INCOHERENT")
    mode_s = get("MODE_SORTIE", "")
    dest = get("DESTINATION", "")
    orient = get("ORIENT", "")
    if dest and mode_s in F.DESTINATION_BY_MODE_SORTIE and dest not in F.DESTINATION_BY_MODE_SORTIE[mode_s]:
        flags.append("DESTINATION_INCOHERENT")
    if orient and mode_s in F.ORIENT_BY_MODE_SORTIE and orient not in F.ORIENT_BY_MODE_SORTIE[mode_s]:
        flags.append("ORIENT_INCOHERENT")
    sortie_s = get("SORTIE", "")
    sortie = F.parse_datetime(sortie_s) if sortie_s else None
    if sortie_s and sortie is None:
        flags.append("SORTIE_INVALID")
        raw_invalid["SORTIE"] = sortie_s
    elif sortie is not None:
        duration = sortie - entree
        if duration <= timedelta(0):
            flags.append("DURATION_NEGATIVE")
        elif duration > MAX_DURATION:
            flags.append("DURATION_TOO_LONG")
    dp = get("DP", "")
    if dp and not _cim10_ok(dp):
        flags.append("DP_FORMAT")
    da = raw.da
    if da:
        for x in da:
            if not _cim10_ok(x):
                flags.append("DA_FORMAT")
                break
    actes = raw.actes
    if actes:
        for x in actes:
            if not F.ccam(x):
                flags.append("ACTE_FORMAT")
                break
    row = (raw.idx, raw.line, day, cp, get("COMMUNE", ""), naissance, get("SEXE", ""), entree, mode_e, prov,
           get("TRANSPORT", ""), get("TRANSPORT_PEC", ""), get("MOTIF", ""), get("GRAVITE", ""), dp, da, actes,
           sortie, mode_s, dest, orient, raw.extra, raw_invalid, flags)
    return row, None


def check_file(path: Path | str, region: Region | None = None, sender: str | None = None,
               sink: VisitSink | None = None, *, name: str | None = None,
               progress: Callable[[int], None] | None = None) -> FileReport:
    """Stream one file through every rule; accepted visits go to `sink` (the loader) as they come.

    `progress(n)` is called every PROGRESS_EVERY visits (progress bars of the CLI)."""
    path = Path(path)
    report = FileReport(file=name or path.name)
    reader = reader_for(path, max_bytes=region.intake.max_file_bytes if region else None)
    gc_was_enabled = gc.isenabled()
    gc.disable()   # millions of short-lived objects, no cycles: the collector would only cost time
    try:
        hdr: FileHeader | None = None
        header_problem: Problem | None = None
        try:
            for raw in reader.visits():
                if hdr is None and header_problem is None:
                    hdr, header_problem = _start(report, reader, region, sender)
                report.visits += 1
                if progress is not None and report.visits % PROGRESS_EVERY == 0:
                    progress(PROGRESS_EVERY)
                if header_problem is not None:
                    continue  # read on to the end only to report XML errors too
                row, problem = check_visit(raw, hdr.period_start, hdr.period_end)
                if problem is not None:
                    report.visits_rejected += 1
                    if len(report.errors) < MAX_REPORTED_VISIT_ERRORS:
                        report.errors.append(problem)
                    if sink is not None:
                        sink.rejected(raw, problem)
                    continue
                flags = row[-1]
                if flags:
                    report.visits_flagged += 1
                    report.flags.update(flags)
                report.per_day[row[2]] += 1
                if sink is not None:
                    sink.visit(row)
            if hdr is None and header_problem is None:
                hdr, header_problem = _start(report, reader, region, sender)
        except FileRejected as exc:
            report.accepted = False
            report.errors.insert(0, exc.problem)
    finally:
        if gc_was_enabled:
            gc.enable()
    if header_problem is not None:
        report.accepted = False
        report.errors.insert(0, header_problem)
    report.warnings[:0] = reader.warnings
    if report.accepted:
        if report.visits == 0:
            report.warnings.append(Problem("NO_VISIT", "le fichier ne contient aucun passage : les passages déjà "
                                           "reçus pour sa période sont effacés"))
        if report.per_day:
            report.period_start = report.period_start or min(report.per_day)
            report.period_end = report.period_end or max(report.per_day)
        if report.period_start is None or report.period_end is None:
            # half a declared period and no accepted visit to complete it: no day is replaced
            report.period_start = report.period_end = None
        bound_period(report, region.intake.period_margin_days if region else PERIOD_MARGIN_DAYS)
    else:
        report.per_day.clear()   # "accepted visits per entry date": none in a rejected file
    return report


def bound_period(report: FileReport, margin_days: int) -> None:
    """Cut the period a file replaces to its visits' span widened by `margin_days` on each side (the EXTRACT
    day stands for the span of a file without accepted visit), with a PERIOD_BOUNDED warning naming the days
    left alone: a header declaring 2000–2030 around one visit does not erase 30 years of stored days."""
    start, end = report.period_start, report.period_end
    if start is None or end is None:
        return
    if report.per_day:
        low, high = min(report.per_day), max(report.per_day)
    elif report.extract is not None:
        low = high = report.extract.date()
    else:
        return
    margin = timedelta(days=margin_days)
    new_start, new_end = max(start, low - margin), min(end, high + margin)
    if (new_start, new_end) == (start, end):
        return
    declared = f"{F.format_date(start)} – {F.format_date(end)}"
    if new_start > new_end:
        report.period_start = report.period_end = None
        report.warnings.append(Problem("PERIOD_BOUNDED", f"période déclarée {declared} à plus de {margin_days} jours "
                                       "de tout passage (ou de la date d'extraction) : aucun jour n'est remplacé"))
        return
    report.period_start, report.period_end = new_start, new_end
    kept = [f"{F.format_date(a)} – {F.format_date(b)}" for a, b in ((start, new_start - timedelta(days=1)),
                                                                  (new_end + timedelta(days=1), end)) if a <= b]
    report.warnings.append(Problem(
        "PERIOD_BOUNDED", f"période déclarée {declared} ramenée à {F.format_date(new_start)} – "
        f"{F.format_date(new_end)} ({margin_days} jours au plus autour des passages) : les jours "
        f"{' et '.join(kept)} ne sont pas remplacés, les passages déjà reçus pour ces jours sont conservés"))


def _start(report: FileReport, reader: RpuReader, region: Region | None,
           sender: str | None) -> tuple[FileHeader | None, Problem | None]:
    assert reader.header is not None
    report.finess = reader.header.finess or None
    try:
        hdr, warnings = check_header(reader.header, region, sender)
    except FileRejected as exc:
        return None, exc.problem
    report.warnings.extend(warnings)
    report.etab, report.ordre, report.extract = hdr.etab, hdr.ordre, hdr.extract
    report.period_start, report.period_end = hdr.period_start, hdr.period_end
    return hdr, None
