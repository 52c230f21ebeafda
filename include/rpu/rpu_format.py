"""The RPU 2006 / OSCOUR format: items, value domains, date formats.

This module is the one source of truth for the format. The XSD (include/xsd/rpu2006.xsd), the per-visit
quality rules (rpu.checks), the exporters and the synthetic generator all read their domains from here, and
tests/test_format_drift.py proves the XSD agrees with it.
"""
from __future__ import annotations

import re
from datetime import date, datetime

ROOT = "OSCOUR"
HEADER = "ETABLISSEMENT"
HEADER_ITEMS = ("FINESS", "ORDRE", "EXTRACT", "DATEDEBUT", "DATEFIN")
PASSAGES = "PASSAGES"
PATIENT = "PATIENT"

# The 18 PATIENT items in the usual order; LISTE_DA / LISTE_ACTES hold repeated DA / ACTE children.
ITEMS = (
    "CP", "COMMUNE", "NAISSANCE", "SEXE", "ENTREE", "MODE_ENTREE", "PROVENANCE", "TRANSPORT",
    "TRANSPORT_PEC", "MOTIF", "GRAVITE", "DP", "LISTE_DA", "LISTE_ACTES", "SORTIE", "MODE_SORTIE",
    "DESTINATION", "ORIENT",
)
LIST_ITEMS = {"LISTE_DA": "DA", "LISTE_ACTES": "ACTE"}
SIMPLE_ITEMS = tuple(i for i in ITEMS if i not in LIST_ITEMS)

SEXE = ("M", "F", "I")
MODE_ENTREE = ("6", "7", "8")
PROVENANCE = ("1", "2", "3", "4", "5", "6", "7", "8")
TRANSPORT = ("PERSO", "AMBU", "VSAB", "SMUR", "HELI", "FO")
TRANSPORT_PEC = ("MED", "PARAMED", "AUCUN")
GRAVITE = ("1", "P", "2", "3", "4", "5", "D")
MODE_SORTIE = ("6", "7", "8", "9")
DESTINATION = ("1", "2", "3", "4", "6", "7")
ORIENT_HOSPITAL = ("HDT", "HO", "SC", "SI", "REA", "UHCD", "MED", "CHIR", "OBST")
ORIENT_HOME = ("FUGUE", "SCAM", "PSA", "REO")
ORIENT = ORIENT_HOSPITAL + ORIENT_HOME

# Closed value domains per item (the XSD enumerations and the quality rules both come from this table).
DOMAINS: dict[str, tuple[str, ...]] = {
    "SEXE": SEXE,
    "MODE_ENTREE": MODE_ENTREE,
    "PROVENANCE": PROVENANCE,
    "TRANSPORT": TRANSPORT,
    "TRANSPORT_PEC": TRANSPORT_PEC,
    "GRAVITE": GRAVITE,
    "MODE_SORTIE": MODE_SORTIE,
    "DESTINATION": DESTINATION,
    "ORIENT": ORIENT,
}

# Coherence between blocks: allowed values given the mode.
PROVENANCE_BY_MODE_ENTREE = {"6": ("1", "2", "3", "4"), "7": ("1", "2", "3", "4"), "8": ("5", "6", "7", "8")}
DESTINATION_BY_MODE_SORTIE = {"6": ("1", "2", "3", "4"), "7": ("1", "2", "3", "4"), "8": ("6", "7", "")}
ORIENT_BY_MODE_SORTIE = {"6": ORIENT_HOSPITAL, "7": ORIENT_HOSPITAL, "8": ORIENT_HOME + ("",)}

# Formats (regular expressions are anchored with fullmatch by the users).
CIM10_RE = r"[A-Z][0-9]{2}[0-9A-Z+]{0,4}"
CCAM_RE = r"[A-Z]{4}[0-9]{3}.*"
CP_RE = r"[0-9][0-9AB][0-9]{3}"
FINESS_RE = r"[0-9][0-9AB][0-9]{7}"
DATE_RE = r"[0-9]{2}/[0-9]{2}/[0-9]{4}"
DATETIME_RE = r"[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}(:[0-9]{2})?"

cim10 = re.compile(CIM10_RE).fullmatch
ccam = re.compile(CCAM_RE).fullmatch
postal_code = re.compile(CP_RE).fullmatch

DATE_FMT = "%d/%m/%Y"
DATETIME_FMT = "%d/%m/%Y %H:%M"
DATETIME_S_FMT = "%d/%m/%Y %H:%M:%S"

MAX_AGE_YEARS = 120
MAX_DURATION_HOURS = 72

# Size bounds of this project (no national rule): a real visit is about 1 KB and its longest item a free text
# of a few hundred characters. A known item longer than MAX_ITEM_CHARS is refused by the XSD (SCHEMA: the
# item's type); a regional element (as written, children included) that long rejects its visit alone
# (ITEM_TOO_LONG). More than MAX_VISIT_BYTES of the file read without a visit ending rejects the file
# (VISIT_TOO_LARGE), while parsing, before anything reaches the database: memory stays bounded whatever the
# file holds. ORDRE is stored as a PostgreSQL smallint.
MAX_ITEM_CHARS = 1000
MAX_VISIT_BYTES = 256 * 1024
MAX_ORDRE = 32767


def parse_date(text: str | None) -> date | None:
    """`JJ/MM/AAAA` → date; None when empty or invalid. (fromisoformat on the reordered slices: the fastest
    strict parse in CPython, this runs for every visit.)"""
    if not text or len(text) != 10 or text[2] != "/" or text[5] != "/":
        return None
    try:
        return date.fromisoformat(f"{text[6:10]}-{text[3:5]}-{text[0:2]}")
    except ValueError:
        return None


def parse_datetime(text: str | None) -> datetime | None:
    """`JJ/MM/AAAA HH:MM` (seconds tolerated, a date alone read as midnight) → naive local datetime;
    None when empty or invalid."""
    if not text:
        return None
    n = len(text)
    if n == 10:
        d = parse_date(text)
        return datetime(d.year, d.month, d.day) if d else None
    if n not in (16, 19) or text[2] != "/" or text[5] != "/" or text[10] != " " or text[13] != ":" \
            or (n == 19 and text[16] != ":"):
        return None
    try:
        return datetime.fromisoformat(f"{text[6:10]}-{text[3:5]}-{text[0:2]}T{text[11:]}")
    except ValueError:
        return None


def format_date(d: date | None) -> str:
    return d.strftime(DATE_FMT) if d else ""


def format_datetime(dt: datetime | None, seconds: bool = False) -> str:
    if not dt:
        return ""
    return dt.strftime(DATETIME_S_FMT if seconds else DATETIME_FMT)


def normalise_code(text: str) -> str:
    """CIM-10 as stored: upper case, no dot, no space."""
    return text.replace(".", "").replace(" ", "").upper()


def age_years(birth: date, at: date) -> int:
    """Age in whole years at a date."""
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))
