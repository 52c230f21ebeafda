"""Visits as RPU 2006 XML text, streamed in chunks; file names and EXTRACT times."""
from __future__ import annotations

import codecs
import os
import re
import zlib
from collections.abc import Iterable
from datetime import date, datetime
from operator import attrgetter
from pathlib import Path

from rpu import rpu_format as F
from rpu.synth.model import Visit
from rpu.synth.visits import _rng

# --------------------------------------------------------------------------------------------------
# Writing

_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_DECL_NAMES = {"utf-8": "UTF-8", "iso8859-1": "ISO-8859-1", "cp1252": "windows-1252", "ascii": "US-ASCII",
               "iso8859-15": "ISO-8859-15"}
_EMPTY_ELEMENT = re.compile(r"<([A-Za-z_][A-Za-z0-9_.-]*)></\1>")
_I1, _I2, _I3 = "    ", "      ", "        "     # PATIENT, its items, DA/ACTE


def _esc(s: str) -> str:
    for a, b in _ESCAPES:
        if a in s:
            s = s.replace(a, b)
    return s


def _needs_escape(s: str) -> bool:
    return "&" in s or "<" in s or ">" in s


_LIST_FIELD = {"LISTE_DA": "DA", "LISTE_ACTES": "ACTES"}
assert set(_LIST_FIELD) == set(F.LIST_ITEMS), "synth: Visit list fields out of step with rpu_format.LIST_ITEMS"
_SIMPLE_GET = attrgetter(*F.SIMPLE_ITEMS)
# where each list block goes among the simple items (items are written in rpu_format.ITEMS order)
_LIST_SLOTS = tuple((F.ITEMS.index(tag) - i, _LIST_FIELD[tag], tag, F.LIST_ITEMS[tag])
                    for i, tag in enumerate(t for t in F.ITEMS if t in F.LIST_ITEMS))
_TEMPLATE = "".join(
    "%s" if tag in F.LIST_ITEMS else f"{_I2}<{tag}>%s</{tag}>\n" for tag in F.ITEMS
) + "%s"
_EMPTY_LIST = {tag: f"{_I2}<{tag}></{tag}>\n" for tag in F.LIST_ITEMS}


def _list_block(tag: str, child: str, values: list[str], esc: bool) -> str:
    if not values:
        return _EMPTY_LIST[tag]
    inner = "".join(f"{_I3}<{child}>{_esc(x) if esc else x}</{child}>\n" for x in values)
    return f"{_I2}<{tag}>\n{inner}{_I2}</{tag}>\n"


def _seconds_of(text: str, salt: str) -> str:
    if len(text) != 16:
        return text
    return f"{text}:{zlib.crc32((text + salt).encode()) % 60:02d}"


def _patient_items(v: Visit, seconds: bool) -> str:
    """The item lines of one PATIENT, in rpu_format.ITEMS order, escaped."""
    simple = _SIMPLE_GET(v)
    if seconds:
        d = dict(zip(F.SIMPLE_ITEMS, simple))
        d["ENTREE"] = _seconds_of(v.ENTREE, v.NAISSANCE + v.CP)
        d["SORTIE"] = _seconds_of(v.SORTIE, v.NAISSANCE + v.MOTIF)
        simple = tuple(d[k] for k in F.SIMPLE_ITEMS)
    esc = _needs_escape("".join(simple)) or any(_needs_escape(x) for x in v.DA) \
        or any(_needs_escape(x) for x in v.ACTES)
    if esc:
        simple = tuple(_esc(x) for x in simple)
    args: list[str] = []
    prev = 0
    for pos, fld, tag, child in _LIST_SLOTS:
        args.extend(simple[prev:pos])
        args.append(_list_block(tag, child, getattr(v, fld), esc))
        prev = pos
    args.extend(simple[prev:])
    extra = v.extra
    args.append("".join(f"{_I2}<{k}>{_esc(x)}</{k}>\n" for k, x in extra.items()) if extra else "")
    return _TEMPLATE % tuple(args)


def _generic_render(v: Visit) -> str:
    return f"{_I1}<{F.PATIENT}>\n" + _patient_items(v, False) + f"{_I1}</{F.PATIENT}>\n"


# The fast path below spells the items out in the order of rpu_format.ITEMS for speed; it is used only
# while that order is unchanged (otherwise the generic renderer, driven by ITEMS, takes over).
_FAST_ORDER = ("CP", "COMMUNE", "NAISSANCE", "SEXE", "ENTREE", "MODE_ENTREE", "PROVENANCE", "TRANSPORT",
               "TRANSPORT_PEC", "MOTIF", "GRAVITE", "DP", "LISTE_DA", "LISTE_ACTES", "SORTIE", "MODE_SORTIE",
               "DESTINATION", "ORIENT")
_FAST_TAGS = 2 * (len(F.ITEMS) + 1)       # '<' (and '>') of PATIENT and its items when lists are empty


def _fast_render(v: Visit) -> str:
    da, ac = v.DA, v.ACTES
    text = (
        f"    <PATIENT>\n      <CP>{v.CP}</CP>\n      <COMMUNE>{v.COMMUNE}</COMMUNE>\n"
        f"      <NAISSANCE>{v.NAISSANCE}</NAISSANCE>\n      <SEXE>{v.SEXE}</SEXE>\n"
        f"      <ENTREE>{v.ENTREE}</ENTREE>\n      <MODE_ENTREE>{v.MODE_ENTREE}</MODE_ENTREE>\n"
        f"      <PROVENANCE>{v.PROVENANCE}</PROVENANCE>\n      <TRANSPORT>{v.TRANSPORT}</TRANSPORT>\n"
        f"      <TRANSPORT_PEC>{v.TRANSPORT_PEC}</TRANSPORT_PEC>\n      <MOTIF>{v.MOTIF}</MOTIF>\n"
        f"      <GRAVITE>{v.GRAVITE}</GRAVITE>\n      <DP>{v.DP}</DP>\n"
        + ("      <LISTE_DA>\n" + "".join([f"        <DA>{x}</DA>\n" for x in da]) + "      </LISTE_DA>\n"
           if da else "      <LISTE_DA></LISTE_DA>\n")
        + ("      <LISTE_ACTES>\n" + "".join([f"        <ACTE>{x}</ACTE>\n" for x in ac]) + "      </LISTE_ACTES>\n"
           if ac else "      <LISTE_ACTES></LISTE_ACTES>\n")
        + f"      <SORTIE>{v.SORTIE}</SORTIE>\n      <MODE_SORTIE>{v.MODE_SORTIE}</MODE_SORTIE>\n"
        f"      <DESTINATION>{v.DESTINATION}</DESTINATION>\n      <ORIENT>{v.ORIENT}</ORIENT>\n    </PATIENT>\n"
    )
    # values needing escapes (or regional extras) take the generic path; tags alone give a known count
    n = _FAST_TAGS + 2 * (len(da) + len(ac))
    if v.extra or "&" in text or text.count("<") != n or text.count(">") != n:
        return _generic_render(v)
    return text


_render_patient = _fast_render if (F.ITEMS == _FAST_ORDER and F.LIST_ITEMS == {"LISTE_DA": "DA", "LISTE_ACTES": "ACTE"}
                                   and F.PATIENT == "PATIENT") else _generic_render


def _declaration_name(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return _DECL_NAMES.get(name, encoding.upper())


def _header(finess: str | None, ordre: int | str, extract: datetime | None,
            period: tuple[date | None, date | None]) -> str:
    lines = [f"<{F.ROOT}>\n  <{F.HEADER}>\n"]
    values = {
        "FINESS": finess,
        "ORDRE": str(ordre),
        "EXTRACT": extract.strftime(F.DATETIME_S_FMT) if extract else None,
        "DATEDEBUT": F.format_date(period[0]),
        "DATEFIN": F.format_date(period[1]),
    }
    for tag in F.HEADER_ITEMS:
        value = values[tag]
        if value is not None:          # None: element omitted (error injection)
            lines.append(f"    <{tag}>{_esc(value)}</{tag}>\n")
    lines.append(f"  </{F.HEADER}>\n")
    return "".join(lines)


def write_file(path: Path, finess: str | None, visits: Iterable[Visit], *, extract: datetime | None,
               period: tuple[date | None, date | None], ordre: int = 0, encoding: str = "utf-8",
               declaration: bool = True, one_passages_per_patient: bool = False,
               seconds: bool = False, self_closing: bool = False, truncate_at: float | None = None,
               chunk: int = 2000) -> int:
    """Stream one OSCOUR file to `path`; returns the number of visits written.

    `finess=None` / `extract=None` omit the header element (error injection). `period[1]=None` writes an
    empty DATEFIN. Text is escaped; unencodable characters become character references when the encoding
    is declared (or UTF-8), '?' otherwise. `self_closing` writes empty elements as ``<DP/>``.
    `truncate_at` (0–1) keeps only that share of the bytes (the ``malformed`` error). The file is written as
    ``<name>.part`` then renamed, so it appears complete (or exactly as truncated) at once.
    """
    path = Path(path)
    declared = declaration or codecs.lookup(encoding).name == "utf-8"
    errors = "xmlcharrefreplace" if declared else "replace"
    tmp = path.with_name(path.name + ".part")
    n = 0
    patient_head, patient_tail = f"{_I1}<{F.PATIENT}>\n", f"{_I1}</{F.PATIENT}>\n"
    slow = seconds
    with open(tmp, "w", encoding=encoding, errors=errors, newline="\n") as fh:
        if declaration:
            fh.write(f'<?xml version="1.0" encoding="{_declaration_name(encoding)}"?>\n')
        fh.write(_header(finess, ordre, extract, period))
        open_p, close_p = f"  <{F.PASSAGES}>\n", f"  </{F.PASSAGES}>\n"
        if not one_passages_per_patient:
            fh.write(open_p)
        buf: list[str] = []
        render = _render_patient
        for v in visits:
            text = patient_head + _patient_items(v, True) + patient_tail if slow else render(v)
            if one_passages_per_patient:
                text = open_p + text + close_p
            buf.append(text)
            n += 1
            if len(buf) >= chunk:
                block = "".join(buf)
                fh.write(_EMPTY_ELEMENT.sub(r"<\1/>", block) if self_closing else block)
                buf.clear()
        if buf:
            block = "".join(buf)
            fh.write(_EMPTY_ELEMENT.sub(r"<\1/>", block) if self_closing else block)
        if not one_passages_per_patient:
            fh.write(close_p)
        fh.write(f"</{F.ROOT}>\n")
    if truncate_at is not None:
        os.truncate(tmp, max(1, int(tmp.stat().st_size * truncate_at)))
    os.replace(tmp, path)
    return n


def file_name(finess: str, extract: datetime) -> str:
    return f"RPU_{finess}_{extract:%Y%m%d%H%M%S}.xml"


def extract_time(finess: str, send_day: date, seed: int, hour: int = 2) -> datetime:
    """EXTRACT of an establishment's daily file: send_day at hour:xx:xx (deterministic)."""
    rng = _rng(seed, finess, send_day.isoformat(), "extract", hour)
    return datetime(send_day.year, send_day.month, send_day.day, hour, rng.randrange(60), rng.randrange(60))
