"""Realistic synthetic RPU 2006 files: daily sliding-window files, real-world variants, injected errors.

Everything is deterministic: a visit depends only on (FINESS, entry day, seed), so the files of consecutive
days re-send the same visits identically (the sliding window), and the same arguments give the same bytes.
Files are written as text chunks (never an XML tree), so memory stays flat whatever the size.

Main entry points
-----------------
- ``visits_for_day(finess, day, seed, mean_per_day)`` — the visits that entered on one day.
- ``write_file(path, finess, visits, extract=..., period=...)`` — one OSCOUR file, streamed.
- ``daily_file(out_dir, finess, send_day, seed=..., mean_per_day=...)`` — the file an establishment sends on
  ``send_day`` (EXTRACT ``send_day 02:xx:xx``, entry dates ``send_day-window_days`` … ``send_day-1``).
- ``generate(region, out_dir, start=..., days=...)`` — every establishment, every send day, in
  ``out_dir/<finess>/RPU_<finess>_<YYYYMMDDHHMMSS>.xml``; ``plan(...)`` says beforehand what each file is.
- ``big_file(path, finess, n_visits)`` — one file of exactly ``n_visits`` visits (benchmarks).
- ``register(subparsers)`` — the ``rpu synth`` subcommand.

Realism (clean generator)
-------------------------
Counts per day: Poisson around the establishment mean × weekday factor (Monday highest) × a mild winter
peak. Entry hours follow a daily curve (night trough, late-morning and early-evening peaks; flatter at
weekends). Ages 0–100 with infant, young-adult and elderly peaks (paediatric / adult units restrict them,
from the establishment name); NAISSANCE = entry − age. A clinical category (trauma, cardio, respiratory, …)
drives MOTIF (SFMU-like codes), DP (≈ 60 frequent CIM-10 codes, ≈ 85 % filled), gravity, transport,
hospitalisation (≈ 20 %: MODE_SORTIE 6/7, DESTINATION 1–4, hospital ORIENT), acts and length of stay
(log-normal, median ≈ 3 h, about 1 % over 24 h, capped at 48 h). Coded values always come from ``rpu_format`` domains and respect its
``*_BY_MODE_*`` coherence tables; some items are left empty at realistic rates (PROVENANCE, MOTIF,
TRANSPORT_PEC, GRAVITE, DP, rarely NAISSANCE). MODE_SORTIE 9 (death) has empty DESTINATION and ORIENT.
CP: mostly a dozen local codes (département from the FINESS; the demo's fictional 99… uses 58), some
``<dep>999``, ``99999`` and ``99xxx`` (abroad), with fictional accented COMMUNE names.
Establishment sizes in ``generate`` come from the name (``establishment_profile``): CHU/CHR 150–220 a day,
clinics 15–35, other hospitals 40–110, × ``scale``; "pédiatrique" units get children only (and ×0.55),
"adultes" units 15 years and over.

Sliding window: a visit is identical in every file that carries it, except that on its *first* send
(entry day = send day − 1) about 10 % of visits have no diagnosis coded yet (empty DP and LISTE_DA); the
next file carries the final coding.

Real-world variants (``VARIANTS``; per establishment in ``generate``, or ``daily_file(variant=...)``)
-------------------------------------------------------------------------------------------------
- ``no_declaration``: no ``<?xml …?>`` line, UTF-8 bytes.
- ``latin1``: declared ISO-8859-1 (accented COMMUNE as Latin-1 bytes; characters outside Latin-1 such as
  ``œ`` become character references); empty items written ``<DP/>``.
- ``cp1252_undeclared``: no declaration, Windows-1252 bytes (``é``, typographic apostrophe ``’`` in
  COMMUNE): the bytes are not valid UTF-8 (a reader must fall back to Windows-1252).
- ``one_passages_per_patient``: each PATIENT wrapped in its own PASSAGES.
- ``seconds``: ENTREE / SORTIE written ``JJ/MM/AAAA HH:MM:SS`` (seconds derived from the visit, stable).
- ``empty_datefin``: ``<DATEFIN></DATEFIN>`` (the period ends at the last entry date in the file).
- ``regional_extras``: extra elements at the end of each PATIENT: HMED, CIRCONSTANCE (sometimes free text
  with ``&``/``<``, escaped), ENTREE_UHCD, MODE_SORTIE_UHCD, DESTINATION_UHCD, ORIENT_UHCD (filled only
  for ORIENT=UHCD, empty elements otherwise).

Injectable errors (``ERRORS``; ``generate(errors=...)``, each injected exactly once, placed by seed)
--------------------------------------------------------------------------------------------------
Rejected files are *additional* files sent later the same day (EXTRACT ``send_day 1x:xx:xx``, a manual
re-send), so the regular daily series stays complete; the two file-content errors alter the regular
daily file of that day (in a region too small for distinct slots, they too become additional files).
``generate`` writes files in arrival order (EXTRACT), day by day.

- ``malformed``: a daily file truncated at 40–80 % of its bytes (no closing tags): not well-formed → reject.
- ``unknown_finess``: header FINESS is a valid (Luhn) FINESS of no establishment of the region → reject.
- ``other_finess``: header FINESS (ET) of ANOTHER establishment of the region, file dropped in this
  establishment's directory → reject (it must not replace the other establishment's data). Needs two
  establishments.
- ``missing_finess``: no FINESS element in the header → reject.
- ``missing_extract``: no EXTRACT element in the header → reject.
- ``bad_entree``: the regular daily file, with three visits whose ENTREE is empty, an impossible date
  (``31/02/… 25:61``) or a two-digit year (``05/01/24 10:12``): those visits cannot be stored, the others can.
- ``quality``: the regular daily file, with visits carrying out-of-domain values (SEXE X, MODE_ENTREE 0,
  TRANSPORT TAXI, GRAVITE 6, ORIENT DOMICILE), incoherent blocks (MODE_ENTREE 8 + PROVENANCE 1,
  MODE_SORTIE 8 + DESTINATION 1 + ORIENT REA, MODE_SORTIE 6 + empty DESTINATION + ORIENT FUGUE), age > 120,
  birth after entry, SORTIE before ENTREE, an 80 h stay, bad CIM-10 / CCAM codes, a bad CP, an ISO birth
  date → stored with quality flags, not rejected. ``QUALITY_CASES`` lists them in order.

File names always carry the FINESS of the directory (the sending establishment), whatever the header says.
Files are written to ``<name>.part`` and renamed, so an intake never sees a half-written file.
"""
from __future__ import annotations

import argparse
import codecs
import math
import os
import random
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from statistics import NormalDist

from rpu import rpu_format as F
from rpu.config import Establishment, Region, finess_with_key, get_region, load_region

VARIANTS = ("no_declaration", "latin1", "cp1252_undeclared", "one_passages_per_patient", "seconds",
            "empty_datefin", "regional_extras")
ERRORS = ("malformed", "unknown_finess", "other_finess", "missing_finess", "missing_extract",
          "bad_entree", "quality")
REJECTED_ERRORS = ERRORS[:5]

LATE_DP_SHARE = 0.10          # visits with a DP whose coding is not done yet on their first send
QUALITY_CASES = ("sexe_out_of_domain", "mode_entree_out_of_domain", "transport_out_of_domain",
                 "gravite_out_of_domain", "orient_out_of_domain", "provenance_incoherent",
                 "sortie_block_incoherent", "hospitalised_without_destination", "age_over_120",
                 "birth_after_entry", "sortie_before_entree", "duration_80h", "bad_codes", "bad_cp",
                 "iso_birth_date")
BAD_ENTREE_VALUES = ("", "31/02/{y} 25:61", "{d}/{m}/{yy} 10:12")      # empty, impossible, 2-digit year


@dataclass(slots=True)
class Visit:
    """One PATIENT, values as the strings written in the file ('' = empty element)."""
    CP: str
    COMMUNE: str
    NAISSANCE: str
    SEXE: str
    ENTREE: str
    MODE_ENTREE: str
    PROVENANCE: str
    TRANSPORT: str
    TRANSPORT_PEC: str
    MOTIF: str
    GRAVITE: str
    DP: str
    DA: list[str]
    ACTES: list[str]
    SORTIE: str
    MODE_SORTIE: str
    DESTINATION: str
    ORIENT: str
    extra: dict[str, str] = field(default_factory=dict)   # regional elements, written after ORIENT


# --------------------------------------------------------------------------------------------------
# Distributions. Values are checked against rpu_format at import time; tables are drawn with
# table[int(random() * len(table))], much faster than random.choices.

_TABLE_SIZE = 10_000


def _table(weights: dict[str, float] | Sequence[tuple[object, float]], domain: Sequence[object] | None = None,
           size: int = _TABLE_SIZE) -> tuple:
    items = list(weights.items()) if isinstance(weights, dict) else list(weights)
    if domain is not None:
        bad = [v for v, _ in items if v != "" and v not in domain]
        if bad:
            raise AssertionError(f"synth: values {bad} not in rpu_format domain {domain}")
    total = float(sum(w for _, w in items))
    out: list[object] = []
    acc = 0.0
    for v, w in items:
        acc += w
        out.extend([v] * (round(acc / total * size) - len(out)))
    return tuple(out)


def _check_codes(codes: Iterable[str], check: Callable, what: str) -> None:
    bad = [c for c in codes if not check(c)]
    if bad:
        raise AssertionError(f"synth: invalid {what} codes {bad}")


HHMM = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))

# entries per hour (relative): night trough, late-morning peak, early-evening peak; flatter at weekends
_HOURLY_WEEKDAY = (2.2, 1.7, 1.3, 1.1, 1.0, 1.0, 1.4, 2.4, 4.0, 5.6, 6.4, 6.6, 5.8, 5.3, 5.6, 5.7, 5.6, 5.8,
                   6.2, 6.0, 5.1, 4.2, 3.4, 2.7)
_HOURLY_WEEKEND = (2.8, 2.2, 1.7, 1.4, 1.2, 1.1, 1.3, 1.9, 3.1, 4.5, 5.5, 5.9, 5.4, 5.1, 5.4, 5.6, 5.7, 5.9,
                   6.2, 6.0, 5.3, 4.5, 3.7, 3.1)
_HOUR_TABLES = (_table(list(enumerate(_HOURLY_WEEKDAY))), _table(list(enumerate(_HOURLY_WEEKEND))))
_WEEKDAY_FACTOR = (1.15, 1.00, 0.97, 0.96, 0.99, 0.97, 1.02)     # Monday … Sunday


def _age_weight(a: int) -> float:
    if a == 0:
        return 3.2
    if a == 1:
        return 2.6
    if a <= 4:
        return 1.8
    if a <= 14:
        return 1.1
    if a <= 17:
        return 1.3
    if a <= 30:
        return 1.45
    if a <= 64:
        return 1.35 - 0.01 * (a - 30)          # 1.35 → 1.01
    if a <= 74:
        return 1.0 + 0.02 * (a - 64)
    if a <= 90:
        return 1.2 + 0.2 * math.exp(-((a - 85) / 5) ** 2)
    return max(0.05, 1.2 - 0.11 * (a - 90))


_AGE_TABLES = {
    "all": _table([(a, _age_weight(a)) for a in range(101)]),
    "child": _table([(a, _age_weight(a)) for a in range(18)]),
    "adult": _table([(a, _age_weight(a)) for a in range(15, 101)]),
}
POPULATIONS = tuple(_AGE_TABLES)

_NORMAL = tuple(NormalDist().inv_cdf((i + 0.5) / _TABLE_SIZE) for i in range(_TABLE_SIZE))  # N(0,1) quantiles

_SEXE = _table({"F": 50.4, "M": 49.45, "I": 0.15}, F.SEXE)
_MODE_ENTREE = _table({"8": 88.0, "6": 7.0, "7": 5.0}, F.MODE_ENTREE)
_PROVENANCE = {
    "8": _table({"5": 58.0, "8": 23.0, "": 17.0, "7": 1.5, "6": 0.5}, F.PROVENANCE_BY_MODE_ENTREE["8"]),
    "6": _table({"1": 78.0, "2": 8.0, "3": 5.0, "4": 7.0, "": 2.0}, F.PROVENANCE_BY_MODE_ENTREE["6"]),
    "7": _table({"1": 74.0, "2": 9.0, "3": 7.0, "4": 8.0, "": 2.0}, F.PROVENANCE_BY_MODE_ENTREE["7"]),
}
_TRANSPORT_LOW = _table({"PERSO": 87.0, "AMBU": 6.0, "VSAB": 6.0, "FO": 0.7, "SMUR": 0.2, "": 0.8}, F.TRANSPORT)
_TRANSPORT_HIGH = _table({"PERSO": 38.0, "AMBU": 24.0, "VSAB": 22.0, "SMUR": 13.0, "HELI": 1.5, "FO": 0.5,
                          "": 1.0}, F.TRANSPORT)
_PEC = {
    "PERSO": _table({"AUCUN": 94.0, "": 6.0}, F.TRANSPORT_PEC),
    "FO": _table({"AUCUN": 94.0, "": 6.0}, F.TRANSPORT_PEC),
    "": _table({"AUCUN": 30.0, "": 70.0}, F.TRANSPORT_PEC),
    "AMBU": _table({"AUCUN": 66.0, "PARAMED": 28.0, "": 6.0}, F.TRANSPORT_PEC),
    "VSAB": _table({"AUCUN": 60.0, "PARAMED": 34.0, "": 6.0}, F.TRANSPORT_PEC),
    "SMUR": _table({"MED": 93.0, "PARAMED": 5.0, "": 2.0}, F.TRANSPORT_PEC),
    "HELI": _table({"MED": 95.0, "PARAMED": 5.0}, F.TRANSPORT_PEC),
}
_TRANSPORT_BY_GRAVITE = {g: (_TRANSPORT_HIGH if g in ("3", "4", "5", "D") else _TRANSPORT_LOW)
                         for g in F.GRAVITE + ("",)}
_BAND = tuple(0 if a < 15 else (1 if a < 75 else 2) for a in range(101))     # child, adult, elderly
_UNSEEN = frozenset(("PSA", "FUGUE", "REO"))          # often left before a diagnosis
_ECG, _CHEST_XRAY = "DEQP003", "ZBQK002"
_HOSP_BY_GRAVITE = {"1": 0.02, "P": 0.30, "2": 0.12, "3": 0.55, "4": 0.85, "5": 0.90, "D": 0.0, "": 0.15}
_HOME_ORIENT = _table({"": 92.5, "PSA": 3.0, "REO": 1.8, "SCAM": 1.5, "FUGUE": 1.2}, F.ORIENT_BY_MODE_SORTIE["8"])
_N_DA = _table({0: 55.0, 1: 30.0, 2: 15.0})
_N_DA_OLD = _table({0: 30.0, 1: 40.0, 2: 30.0})
_DA_CODES = ("I10", "E119", "E785", "Z608", "F100", "Z880", "N179", "E876", "Z751", "R296", "I259", "J449",
             "F03", "Z915", "E660", "Z921")
_check_codes(_DA_CODES, F.cim10, "CIM-10")
_check_codes((_ECG, _CHEST_XRAY), F.ccam, "CCAM")
assert _UNSEEN <= set(F.ORIENT_HOME)


@dataclass(frozen=True)
class _Category:
    name: str
    weights: tuple[float, float, float]              # child (<15), adult (15–74), elderly (≥75)
    motifs: tuple[str, ...]
    dp: tuple                                        # lookup table of CIM-10 codes
    gravite: tuple                                   # lookup table of GRAVITE
    hosp: float                                      # multiplier of the hospitalisation probability
    orient: tuple                                    # lookup table of hospital ORIENT
    acts: tuple[str, ...]
    act_p: float
    stay: float                                      # multiplier of the length of stay


def _cat(name, weights, motifs, dp, gravite, hosp, orient, acts=(), act_p=0.05, stay=1.0) -> _Category:
    _check_codes(dp, F.cim10, "CIM-10")
    _check_codes(acts, F.ccam, "CCAM")
    return _Category(name, weights, tuple(motifs), _table(dp), _table(gravite, F.GRAVITE), hosp,
                     _table(orient, F.ORIENT_HOSPITAL), tuple(acts), act_p if acts else 0.0, stay)


_G_LIGHT = {"1": 30.0, "2": 62.0, "3": 6.5, "4": 0.8, "5": 0.2, "": 0.5}
_G_MED = {"1": 12.0, "2": 62.0, "3": 21.0, "4": 3.0, "5": 0.8, "D": 0.2, "": 1.0}
_G_HEAVY = {"1": 4.0, "2": 50.0, "3": 34.0, "4": 8.0, "5": 2.5, "D": 0.5, "": 1.0}
_O_MED = {"MED": 55.0, "UHCD": 30.0, "CHIR": 6.0, "SI": 4.0, "SC": 3.0, "REA": 2.0}

_CATEGORIES = (
    _cat("trauma", (40, 34, 24), ("TRAUMATO01", "TRAUMATO02", "TRAUMATO03", "TRAUMATO04", "TRAUMATO05",
                                  "TRAUMATO06", "TRAUMATO08", "TRAUMATO10"),
         {"S934": 16, "S0100": 12, "S6260": 8, "S525": 8, "S836": 6, "T119": 7, "S202": 5, "S7200": 5,
          "S099": 9, "S617": 6, "T140": 8}, _G_LIGHT, 0.8,
         {"CHIR": 55.0, "UHCD": 30.0, "MED": 8.0, "SI": 3.0, "REA": 2.0, "SC": 2.0},
         ("MZQK002", "NDQK001", "QZJA002", "ACQK001"), 0.45),
    _cat("gastro", (12, 12, 10), ("GASTRO01", "GASTRO02", "GASTRO04", "GASTRO05", "GASTRO07"),
         {"R104": 35, "K590": 12, "A09": 18, "K359": 8, "K802": 7, "R11": 20}, _G_MED, 1.0,
         {"CHIR": 35.0, "MED": 35.0, "UHCD": 28.0, "SI": 2.0}, ("ZCQK002", "ZCQH001"), 0.15),
    _cat("cardio", (1, 8, 14), ("CARDIO01", "CARDIO02", "CARDIO04", "CARDIO06", "CARDIO09"),
         {"R074": 35, "I10": 10, "I489": 15, "I500": 15, "R55": 18, "I214": 7}, _G_HEAVY, 1.2,
         {"MED": 45.0, "UHCD": 22.0, "SC": 12.0, "SI": 14.0, "REA": 4.0, "CHIR": 3.0},
         ("DEQP003",), 0.65, 1.3),
    _cat("respi", (16, 7, 14), ("RESPI01", "RESPI02", "RESPI03", "RESPI05", "RESPI08"),
         {"J069": 30, "J189": 20, "J210": 12, "J441": 12, "J459": 14, "U071": 6, "J22": 6}, _G_MED, 1.1,
         _O_MED, ("ZBQK002",), 0.35),
    _cat("neuro", (4, 8, 10), ("NEURO01", "NEURO02", "NEURO03", "NEURO05", "NEURO07"),
         {"R51": 30, "I64": 14, "G409": 14, "R42": 24, "G439": 18}, _G_MED, 1.1, _O_MED,
         ("ACQK001",), 0.3),
    _cat("general", (16, 9, 14), ("GENERAL01", "GENERAL02", "GENERAL03", "GENERAL05"),
         {"R509": 35, "R53+1": 20, "E86": 12, "R410": 15, "R296": 18}, _G_MED, 1.0, _O_MED,
         ("DEQP003",), 0.2, 1.2),
    _cat("psy", (1, 5, 2), ("PSY01", "PSY02", "PSY04", "PSY06"),
         {"F100": 40, "F419": 30, "F329": 20, "R456": 10},
         {"P": 45.0, "1": 5.0, "2": 40.0, "3": 8.0, "": 2.0}, 0.9,
         {"HDT": 22.0, "HO": 8.0, "MED": 15.0, "UHCD": 55.0}, (), 0.0, 1.5),
    _cat("toxico", (1, 3, 1), ("TOXICO01", "TOXICO02", "TOXICO04"),
         {"T424": 40, "T391": 30, "T510": 30}, _G_MED, 1.6, {"UHCD": 60.0, "MED": 20.0, "REA": 10.0, "SI": 10.0},
         ("DEQP003",), 0.3, 1.4),
    _cat("uro", (2, 4, 5), ("URO01", "URO02", "URO04"), {"N390": 50, "N23": 35, "R33": 15}, _G_MED, 0.8,
         {"MED": 40.0, "CHIR": 35.0, "UHCD": 25.0}, ("ZCQM001",), 0.2),
    _cat("orl_ophtalmo", (8, 4, 2), ("ORL01", "ORL02", "OPHTALMO01", "OPHTALMO03"),
         {"H669": 30, "J029": 35, "H109": 20, "T150": 15}, _G_LIGHT, 0.3, {"CHIR": 50.0, "MED": 50.0}, (), 0.0,
         0.7),
    _cat("dermato", (4, 4, 2), ("DERMATO01", "DERMATO02", "DERMATO05"),
         {"L031": 30, "L500": 40, "T784": 30}, _G_LIGHT, 0.5, {"MED": 50.0, "UHCD": 30.0, "CHIR": 20.0}),
    _cat("rhumato", (1, 5, 5), ("RHUMATO01", "RHUMATO02", "RHUMATO04"),
         {"M545": 50, "M255": 30, "M62890": 20}, _G_LIGHT, 0.6, {"MED": 50.0, "UHCD": 40.0, "CHIR": 10.0},
         ("MZQK002",), 0.25),
    _cat("gyneco", (0, 2.5, 0), ("GYNECO01", "GYNECO02", "GYNECO03"),
         {"O200": 40, "N939": 35, "R102": 25}, _G_LIGHT, 0.8, {"OBST": 65.0, "CHIR": 20.0, "UHCD": 15.0},
         ("JQQM001",), 0.3),
)
_CAT_TABLES = tuple(_table([(c, c.weights[b]) for c in _CATEGORIES]) for b in range(3))
_GYNECO = _CATEGORIES[-1]
_PSY_ORIENT = frozenset(("HDT", "HO"))

# Communes: suffix of the postal code (after the département) and a fictional name. Accents and
# apostrophes on purpose (the encoding variants need them); œ is not in Latin-1.
_COMMUNES = (
    ("000", "Démoville"), ("100", "Valbourg"), ("110", "Saint-Aurèle"), ("120", "Montclair"),
    ("130", "Port-Navon"), ("140", "Lormes-la-Forêt"), ("150", "Les Deux-Rives"), ("160", "Haute-Vallée"),
    ("170", "Sainte-Anne-sur-Lône"), ("180", "L'Isle-Aurèle"), ("190", "Châteauneuf-en-Brière"),
    ("200", "Bourg-Fléchère"), ("210", "Villers-d'Aubrac"), ("220", "Cœur-de-Brie"), ("230", "Les Tilleuls"),
    ("240", "Écully-le-Haut"), ("250", "Pré-Saint-Gervais-sur-Orne"), ("260", "Maisons-Blanches"),
)
_FAR_AWAY = (("75011", "Paris"), ("69003", "Lyon"), ("13008", "Marseille"), ("33000", "Bordeaux"),
             ("59000", "Lille"), ("44000", "Nantes"), ("67000", "Strasbourg"), ("31000", "Toulouse"))
_ABROAD = (("99131", "Bruxelles"), ("99109", "Berlin"), ("99132", "Londres"), ("99134", "Madrid"),
           ("99127", "Milan"), ("99140", "Genève"), ("99139", "Porto"), ("99350", "Casablanca"))
_PLACES_CACHE: dict[str, tuple] = {}


def _departement(finess: str) -> str:
    """Département of an establishment from its FINESS (the demo's fictional '99' → '58')."""
    d = finess[:2]
    if d in ("2A", "2B"):
        return "20"
    if d.isdigit() and 1 <= int(d) <= 95:
        return d
    return "58"


def _places(finess: str) -> tuple:
    """Lookup table of (CP, COMMUNE) for an establishment's patients."""
    t = _PLACES_CACHE.get(finess)
    if t is None:
        dep = _departement(finess)
        home = zlib.crc32(finess.encode()) % len(_COMMUNES)
        n = len(_COMMUNES)
        weights: list[tuple[tuple[str, str], float]] = []
        for i, (suffix, name) in enumerate(_COMMUNES):
            dist = min((i - home) % n, (home - i) % n)
            weights.append(((dep + suffix, name), 14.0 if dist == 0 else 60.0 / n / (1 + dist) ** 0.7))
        local = sum(w for _, w in weights)
        scale = 88.0 / local
        weights = [(p, w * scale) for p, w in weights]
        weights.append(((dep + "999", ""), 3.0))
        weights += [(p, 5.0 / len(_FAR_AWAY)) for p in _FAR_AWAY]
        weights.append((("99999", ""), 1.5))
        weights += [(p, 1.5 / len(_ABROAD)) for p in _ABROAD]
        for (cp, _), _w in weights:
            if not F.postal_code(cp):
                raise AssertionError(f"synth: bad CP {cp}")
        t = _PLACES_CACHE[finess] = _table(weights)
    return t


_DSTR: dict[int, str] = {}


def _date_str(ordinal: int) -> str:
    s = _DSTR.get(ordinal)
    if s is None:
        d = date.fromordinal(ordinal)
        s = _DSTR[ordinal] = f"{d.day:02d}/{d.month:02d}/{d.year:04d}"
    return s


# --------------------------------------------------------------------------------------------------
# Visits

def _rng(*parts: object) -> random.Random:
    """A random generator seeded by a string (sha512-based: stable across processes and Python runs)."""
    return random.Random("rpu-synth/" + "/".join(str(p) for p in parts))


def day_count(finess: str, day: date, seed: int, mean_per_day: float) -> int:
    """Number of visits of one establishment on one day: Poisson(mean × weekday × season)."""
    lam = mean_per_day * _WEEKDAY_FACTOR[day.weekday()] * (
        1.0 + 0.07 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 20) / 365.25))
    if lam <= 0:
        return 0
    rng = _rng(seed, finess, day.isoformat(), "n")
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def visits_for_day(finess: str, day: date, seed: int, mean_per_day: float, *,
                   population: str = "all") -> list[Visit]:
    """The visits that entered on `day` at establishment `finess`, in ENTREE order.

    Deterministic for (finess, day, seed, mean_per_day, population). `population` is "all", "child"
    (0–17, paediatric unit) or "adult" (15 and over).
    """
    n = day_count(finess, day, seed, mean_per_day)
    if n <= 0:
        return []
    rng = _rng(seed, finess, day.isoformat(), "visits")
    r = rng.random
    hours = _HOUR_TABLES[day.weekday() >= 5]
    nh = len(hours)
    minutes = sorted([hours[int(r() * nh)] * 60 + int(r() * 60) for _ in range(n)])
    ages = _AGE_TABLES[population]
    places = _places(finess)
    d0 = day.toordinal()
    dget = _DSTR.get
    day_str = _date_str(d0) + " "
    T = _TABLE_SIZE
    normal, hhmm, sexes, modes, provs = _NORMAL, HHMM, _SEXE, _MODE_ENTREE, _PROVENANCE
    cat_tables, hosp_by_g, home_orient, pec = _CAT_TABLES, _HOSP_BY_GRAVITE, _HOME_ORIENT, _PEC
    tr_by_g, da_codes, nda, bands = _TRANSPORT_BY_GRAVITE, _DA_CODES, len(_DA_CODES), _BAND
    stay_by_band, hosp_by_band = (0.75, 1.0, 1.3), (0.5, 1.0, 1.5)
    exp = math.exp
    out: list[Visit] = []
    append = out.append
    for m in minutes:
        age = ages[int(r() * T)]
        band = bands[age]
        cat = cat_tables[band][int(r() * T)]
        sexe = "F" if cat is _GYNECO else sexes[int(r() * T)]
        cp, commune = places[int(r() * T)]
        if r() < 0.003:
            naissance = ""
        else:
            b = d0 - int((age + r()) * 365.2425)
            naissance = dget(b) or _date_str(b)
        mode_e = modes[int(r() * T)]
        prov = provs[mode_e][int(r() * T)]
        g = cat.gravite[int(r() * T)]
        if band == 2 and g == "2" and r() < 0.3:
            g = "3"
        tr = tr_by_g[g][int(r() * T)]
        if band == 2 and tr == "PERSO" and r() < 0.35:
            tr = "AMBU"
        tpec = pec[tr][int(r() * T)]
        motif = cat.motifs[int(r() * len(cat.motifs))] if r() > 0.07 else ""
        # exit
        stay = cat.stay * stay_by_band[band]
        x = r()
        if g == "D" or (g == "5" and x < 0.15) or (band == 2 and g == "4" and x < 0.04):
            mode_s, dest, orient = "9", "", ""
            stay *= 0.8
        elif r() < hosp_by_g[g] * cat.hosp * hosp_by_band[band]:
            orient = cat.orient[int(r() * T)]
            if orient in _PSY_ORIENT:
                mode_s, dest = ("7" if r() < 0.7 else "6"), "4"
            else:
                mode_s = "7" if r() < 0.07 else "6"
                dest = "1" if mode_s == "6" or r() < 0.85 else ("2" if r() < 0.7 else "3")
            stay *= 2.5 if orient == "UHCD" else 1.6
        else:
            mode_s, orient = "8", home_orient[int(r() * T)]
            y = r()
            dest = "7" if (band == 2 and y < 0.12) else ("6" if y > 0.996 else "")
            if orient:
                stay *= 0.5 if orient != "SCAM" else 0.8
            elif g == "1":
                stay *= 0.6
        # coding
        if orient in _UNSEEN and r() < 0.75:
            dp, da = "", []
        elif r() < 0.13:
            dp, da = "", []
        else:
            dp = cat.dp[int(r() * T)]
            if dp[0] == "O" and age >= 45:
                dp = "N939"
            k = (_N_DA_OLD if band == 2 else _N_DA)[int(r() * T)]
            da = [da_codes[int(r() * nda)] for _ in range(k)] if k else []
        if cat.act_p and r() < cat.act_p:
            actes = [cat.acts[int(r() * len(cat.acts))]]
            if r() < 0.2:
                actes.append(_ECG if actes[0] != _ECG else _CHEST_XRAY)
        else:
            actes = []
        dur = int(160.0 * stay * exp(0.75 * normal[int(r() * T)]))
        dur = 5 if dur < 5 else (2880 if dur > 2880 else dur)       # at most 48 h (72 h is a quality error)
        t = m + dur
        so = d0 + t // 1440
        sortie = (dget(so) or _date_str(so)) + " " + hhmm[t % 1440]
        append(Visit(cp, commune, naissance, sexe, day_str + hhmm[m], mode_e, prov, tr, tpec, motif, g, dp,
                     da, actes, sortie, mode_s, dest, orient, {}))
    return out


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


# --------------------------------------------------------------------------------------------------
# Daily files and variants

def _window_visits(finess: str, send_day: date, seed: int, mean_per_day: float, window_days: int,
                   population: str, late_dp: float) -> Iterator[Visit]:
    """Visits of send_day-window_days … send_day-1 (oldest first); first-send visits may lack their DP."""
    for k in range(window_days, 0, -1):
        day = send_day - timedelta(days=k)
        visits = visits_for_day(finess, day, seed, mean_per_day, population=population)
        if k == 1 and late_dp > 0:
            rng = _rng(seed, finess, day.isoformat(), "late-dp")
            for v in visits:
                if rng.random() < late_dp and v.DP:
                    v.DP, v.DA = "", []
        yield from visits


def _cp1252_style(v: Visit) -> Visit:
    """Windows software: typographic apostrophes in free text."""
    if "'" in v.COMMUNE:
        v.COMMUNE = v.COMMUNE.replace("'", "\u2019")
    return v


_CIRCONSTANCES = _table({"": 40.0, "VIE_COURANTE": 20.0, "AVP": 8.0, "AT": 6.0, "SPORT": 8.0, "AGRESSION": 3.0,
                         "AUTOLYSE": 2.0, "Chute < 1 m & malaise": 1.0, "Rixe > 2 pers.": 0.5})


def _with_extras(visits: Iterable[Visit], seed: int, finess: str) -> Iterator[Visit]:
    """Regional elements, drawn per entry day (so a re-sent visit keeps them)."""
    day = None
    r = random.random
    for v in visits:
        if v.ENTREE[:10] != day:
            day = v.ENTREE[:10]
            r = _rng(seed, finess, day, "extras").random
        entree = F.parse_datetime(v.ENTREE)
        hmed = F.format_datetime(entree + timedelta(minutes=5 + int(r() * 90))) if entree and r() < 0.93 else ""
        uhcd = v.ORIENT == "UHCD"
        v.extra = {
            "HMED": hmed,
            "CIRCONSTANCE": _CIRCONSTANCES[int(r() * _TABLE_SIZE)],
            "ENTREE_UHCD": v.SORTIE if uhcd else "",
            "MODE_SORTIE_UHCD": ("6" if r() < 0.3 else "8") if uhcd else "",
            "DESTINATION_UHCD": "",
            "ORIENT_UHCD": "",
        }
        if uhcd and v.extra["MODE_SORTIE_UHCD"] == "6":
            v.extra["DESTINATION_UHCD"] = "1"
            v.extra["ORIENT_UHCD"] = "MED" if r() < 0.7 else "CHIR"
        yield v


def _variant_options(variant: str | None) -> dict:
    if variant is None:
        return {}
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return {
        "no_declaration": {"declaration": False},
        "latin1": {"encoding": "iso-8859-1", "self_closing": True},
        "cp1252_undeclared": {"encoding": "cp1252", "declaration": False},
        "one_passages_per_patient": {"one_passages_per_patient": True},
        "seconds": {"seconds": True},
        "empty_datefin": {},
        "regional_extras": {},
    }[variant]


def daily_file(out_dir: Path, finess: str, send_day: date, *, seed: int, mean_per_day: float,
               window_days: int = 7, variant: str | None = None, **kw) -> Path:
    """Write the file establishment `finess` sends on `send_day` into `out_dir`; return its path.

    Visits of send_day-1 … send_day-window_days by entry date, DATEDEBUT = first day, DATEFIN =
    send_day-1 (empty for the ``empty_datefin`` variant), EXTRACT = send_day 02:xx:xx.
    Extra keywords: ``population`` ("all"/"child"/"adult"), ``late_dp`` (share of first-send visits without
    their DP yet, default LATE_DP_SHARE), ``extract`` (datetime), ``header_finess`` (None omits it),
    ``header_extract`` (datetime written in the header, default ``extract``; None omits it),
    ``transform`` (callable list[Visit] → list[Visit], applied to the whole window), and any write_file
    option (``encoding``, ``declaration``, ``ordre``, ``one_passages_per_patient``, ``seconds``,
    ``self_closing``, ``truncate_at``).
    """
    population = kw.pop("population", "all")
    late_dp = kw.pop("late_dp", LATE_DP_SHARE)
    extract = kw.pop("extract", None) or extract_time(finess, send_day, seed)
    header_finess = kw.pop("header_finess", finess)
    header_extract = kw.pop("header_extract", extract)
    transform = kw.pop("transform", None)
    options = {**_variant_options(variant), **kw}
    first, last = send_day - timedelta(days=window_days), send_day - timedelta(days=1)
    period = (first, None if variant == "empty_datefin" else last)
    visits: Iterable[Visit] = _window_visits(finess, send_day, seed, mean_per_day, window_days, population,
                                             late_dp)
    if variant == "cp1252_undeclared":
        visits = map(_cp1252_style, visits)
    elif variant == "regional_extras":
        visits = _with_extras(visits, seed, finess)
    if transform is not None:
        visits = transform(list(visits))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(finess, extract)
    write_file(path, header_finess, visits, extract=header_extract, period=period, **options)
    return path


# --------------------------------------------------------------------------------------------------
# Injected errors

def _bad_entree(visits: list[Visit], rng: random.Random, seed_visits: Callable[[], list[Visit]]) -> list[Visit]:
    if len(visits) < len(BAD_ENTREE_VALUES):
        visits = visits + seed_visits()[: len(BAD_ENTREE_VALUES) - len(visits)]
    picks = sorted(rng.sample(range(len(visits)), min(len(BAD_ENTREE_VALUES), len(visits))))
    for value, i in zip(BAD_ENTREE_VALUES, picks):
        v = visits[i] = replace(visits[i])
        d = F.parse_datetime(v.ENTREE) or datetime(2000, 1, 1)
        v.ENTREE = value.format(y=d.year, yy=f"{d.year % 100:02d}", m=f"{d.month:02d}", d=f"{d.day:02d}")
    return visits


def _corrupt(v: Visit, case: str) -> Visit:
    v = replace(v, DA=list(v.DA), ACTES=list(v.ACTES), extra=dict(v.extra))
    entree = F.parse_datetime(v.ENTREE) or datetime(2000, 1, 1, 12)
    if case == "sexe_out_of_domain":
        v.SEXE = "X"
    elif case == "mode_entree_out_of_domain":
        v.MODE_ENTREE, v.PROVENANCE = "0", ""
    elif case == "transport_out_of_domain":
        v.TRANSPORT, v.TRANSPORT_PEC = "TAXI", "SAMU"
    elif case == "gravite_out_of_domain":
        v.GRAVITE = "6"
    elif case == "orient_out_of_domain":
        v.MODE_SORTIE, v.DESTINATION, v.ORIENT = "8", "", "DOMICILE"
    elif case == "provenance_incoherent":
        v.MODE_ENTREE, v.PROVENANCE = "8", "1"
    elif case == "sortie_block_incoherent":
        v.MODE_SORTIE, v.DESTINATION, v.ORIENT = "8", "1", "REA"
    elif case == "hospitalised_without_destination":
        v.MODE_SORTIE, v.DESTINATION, v.ORIENT = "6", "", "FUGUE"
    elif case == "age_over_120":
        v.NAISSANCE = F.format_date(date(entree.year - 125, 3, 14))
    elif case == "birth_after_entry":
        v.NAISSANCE = F.format_date((entree + timedelta(days=40)).date())
    elif case == "sortie_before_entree":
        v.SORTIE = F.format_datetime(entree - timedelta(hours=2))
    elif case == "duration_80h":
        v.SORTIE = F.format_datetime(entree + timedelta(hours=80))
    elif case == "bad_codes":
        v.DP, v.DA, v.ACTES = "XYZ12", ["123", "fracture"], ["ECG"]
    elif case == "bad_cp":
        v.CP = "ABCDE"
    elif case == "iso_birth_date":
        v.NAISSANCE = (entree - timedelta(days=365 * 40)).strftime("%Y-%m-%d")
    else:  # pragma: no cover - QUALITY_CASES is the list
        raise ValueError(case)
    return v


def _quality(visits: list[Visit], rng: random.Random, seed_visits: Callable[[], list[Visit]]) -> list[Visit]:
    n = len(QUALITY_CASES)
    if len(visits) < n:
        visits = visits + seed_visits()[: n - len(visits)]
    picks = sorted(rng.sample(range(len(visits)), min(n, len(visits))))
    for case, i in zip(QUALITY_CASES, picks):
        visits[i] = _corrupt(visits[i], case)
    return visits


def _unknown_finess(region: Region, rng: random.Random) -> str:
    known = {f for e in region.establishments for f in e.identifiers}
    while True:
        f = finess_with_key(f"{rng.randrange(1, 96):02d}{rng.randrange(1_000_000):06d}")
        if f not in known:
            return f


# --------------------------------------------------------------------------------------------------
# A region

@dataclass(frozen=True)
class PlannedFile:
    """One file `generate` writes: where, for whom, what it is."""
    finess: str                       # establishment (directory and file name)
    send_day: date
    extract: datetime                 # EXTRACT of the file (also in its name), even when the header omits it
    mean_per_day: float
    population: str
    variant: str | None = None
    error: str | None = None
    header_finess: str | None = None  # header FINESS of an additional (error) file; None: regular or omitted

    @property
    def relpath(self) -> Path:
        return Path(self.finess) / file_name(self.finess, self.extract)


def establishment_profile(e: Establishment, seed: int) -> tuple[float, str]:
    """(mean visits per day at scale 1, population) from the establishment name, jittered by seed."""
    name = e.name.lower()
    rng = _rng(seed, e.finess, "size")
    if "chu" in name.split() or "chr" in name.split() or "chu" in name[:4]:
        mean = rng.uniform(150, 220)
    elif "clinique" in name or "polyclinique" in name:
        mean = rng.uniform(15, 35)
    else:
        mean = rng.uniform(40, 110)
    population = "all"
    if "pédiatri" in name or "pediatri" in name or "enfant" in name:
        population, mean = "child", mean * 0.55
    elif "adulte" in name:
        population = "adult"
    return mean, population


def _variant_assignment(region: Region, seed: int) -> dict[str, str]:
    ests = [e.finess for e in region.establishments]
    n_var = min(len(VARIANTS), max(0, len(ests) - max(1, len(ests) // 3)))
    rng = _rng(seed, region.code, "variants")
    chosen = rng.sample(ests, n_var)
    variants = list(VARIANTS) if n_var == len(VARIANTS) else rng.sample(VARIANTS, n_var)
    return dict(zip(chosen, variants))


def plan(region: Region, *, start: date, days: int, seed: int = 1, scale: float = 1.0,
         errors: Sequence[str] = (), window_days: int = 7) -> list[PlannedFile]:
    """What `generate` writes, file by file (same arguments), in writing order."""
    errors = _check_errors(errors)
    if days <= 0 or not region.establishments:
        if errors:
            raise ValueError("errors need at least one send day and one establishment")
        return []
    variants = _variant_assignment(region, seed)
    profiles = {e.finess: establishment_profile(e, seed) for e in region.establishments}
    send_days = [start + timedelta(days=i) for i in range(days)]
    # error placement: distinct (establishment, day) slots when possible
    rng = _rng(seed, region.code, "errors")
    slots = [(e.finess, d) for e in region.establishments for d in send_days]
    rng.shuffle(slots)
    # content errors alter the regular file of their slot; rejected errors (and a content error whose slot
    # is taken, in tiny regions) are additional files sent later that day
    content_errors: dict[tuple[str, date], str] = {}
    additional: list[tuple[str, tuple[str, date]]] = []
    for i, err in enumerate(errors):
        slot = slots[i % len(slots)]
        if err not in REJECTED_ERRORS and slot not in content_errors:
            content_errors[slot] = err
        else:
            additional.append((err, slot))
    others = {e.finess: [o for o in region.establishments if o.finess != e.finess] for e in region.establishments}
    out: list[PlannedFile] = []
    for d in send_days:                 # day by day, as an intake would receive them
        for e in region.establishments:
            mean, population = profiles[e.finess]
            err = content_errors.get((e.finess, d))
            out.append(PlannedFile(e.finess, d, extract_time(e.finess, d, seed), mean * scale, population,
                                   variants.get(e.finess), err))
            for k, (rerr, slot) in enumerate(additional):
                if slot != (e.finess, d):
                    continue
                header: str | None = e.finess
                if rerr == "unknown_finess":
                    header = _unknown_finess(region, _rng(seed, e.finess, d.isoformat(), rerr))
                elif rerr == "other_finess":
                    pool = others[e.finess]
                    if not pool:
                        raise ValueError("error other_finess needs at least two establishments")
                    header = pool[_rng(seed, e.finess, d.isoformat(), rerr).randrange(len(pool))].finess
                elif rerr == "missing_finess":
                    header = None
                out.append(PlannedFile(e.finess, d, extract_time(e.finess, d, seed, hour=10 + k), mean * scale,
                                       population, variants.get(e.finess), rerr, header))
    out.sort(key=lambda pf: (pf.extract, pf.finess))      # the order files would arrive in
    return out


def _check_errors(errors: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(errors, str):
        errors = [x for x in errors.split(",") if x.strip()]
    names = [x.strip() for x in errors]
    if "all" in names:
        return ERRORS
    unknown = [x for x in names if x not in ERRORS]
    if unknown:
        raise ValueError(f"unknown error name(s) {', '.join(unknown)}; known: {', '.join(ERRORS)}, all")
    return tuple(dict.fromkeys(names))


def _count_visits(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"<PATIENT>") for chunk in iter(lambda: fh.read(1 << 20), b""))


def write_planned(out_dir: Path, pf: PlannedFile, *, seed: int, window_days: int = 7) -> tuple[Path, int]:
    """Write one planned file; returns (path, visits written — for a malformed file, those before the cut)."""
    d = Path(out_dir) / pf.finess
    kw: dict = {"population": pf.population, "extract": pf.extract}
    n_written = [0]

    def seed_visits() -> list[Visit]:   # when a day is too small to alter, borrow a few visits
        return visits_for_day(pf.finess, pf.send_day - timedelta(days=1), seed + 7919, 20.0,
                              population=pf.population)

    def counting(visits: list[Visit]) -> list[Visit]:
        n_written[0] = len(visits)
        return visits

    err_rng = _rng(seed, pf.finess, pf.send_day.isoformat(), pf.error or "")
    if pf.error == "bad_entree":
        kw["transform"] = lambda vs: counting(_bad_entree(vs, err_rng, seed_visits))
    elif pf.error == "quality":
        kw["transform"] = lambda vs: counting(_quality(vs, err_rng, seed_visits))
    else:
        kw["transform"] = counting
    if pf.error in ("unknown_finess", "other_finess", "missing_finess"):
        kw["header_finess"] = pf.header_finess
    elif pf.error == "missing_extract":
        kw["header_extract"] = None         # the file name still carries the time
    elif pf.error == "malformed":
        kw["truncate_at"] = 0.4 + 0.4 * err_rng.random()
    path = daily_file(d, pf.finess, pf.send_day, seed=seed, mean_per_day=pf.mean_per_day,
                      window_days=window_days, variant=pf.variant, **kw)
    if pf.error == "malformed":
        n_written[0] = _count_visits(path)
    return path, n_written[0]


def generate(region: Region, out_dir: Path, *, start: date, days: int, seed: int = 1, scale: float = 1.0,
             errors: Sequence[str] = (), window_days: int = 7,
             progress: Callable[[Path, int], None] | None = None) -> list[Path]:
    """Write, for each establishment and each send day start … start+days-1, its daily file into
    out_dir/<finess>/ (plus the injected error files); return the paths in writing order.

    `progress(path, n_visits)` is called after each file.
    """
    paths = []
    for pf in plan(region, start=start, days=days, seed=seed, scale=scale, errors=errors,
                   window_days=window_days):
        path, n = write_planned(out_dir, pf, seed=seed, window_days=window_days)
        paths.append(path)
        if progress:
            progress(path, n)
    return paths


# --------------------------------------------------------------------------------------------------
# Benchmarks

def _big_layout(finess: str, n_visits: int, seed: int, start: date,
                mean_per_day: float | None) -> tuple[float, list[int], date, datetime]:
    """(mean per day, visits per day, last day, EXTRACT) of a big file; counts are cheap to draw."""
    mean = mean_per_day or max(1.0, min(3000.0, n_visits / 7))
    counts: list[int] = []
    total, day = 0, start
    while total < n_visits:
        c = day_count(finess, day, seed, mean)
        counts.append(min(c, n_visits - total))
        total += c
        day += timedelta(days=1)
    last = start + timedelta(days=max(0, len(counts) - 1))
    extract = datetime.combine(last + timedelta(days=1), datetime.min.time()).replace(hour=2, minute=30)
    return mean, counts, last, extract


def big_file_name(finess: str, n_visits: int, seed: int = 1, start: date = date(2025, 1, 1), *,
                  mean_per_day: float | None = None) -> str:
    """The RPU_<finess>_<EXTRACT>.xml name of the file big_file writes with these arguments."""
    return file_name(finess, _big_layout(finess, n_visits, seed, start, mean_per_day)[3])


def big_file(path: Path, finess: str, n_visits: int, seed: int = 1, start: date = date(2025, 1, 1), *,
             mean_per_day: float | None = None, progress: Callable[[int], None] | None = None) -> Path:
    """One file of exactly `n_visits` visits over consecutive days from `start` (default ~3,000 a day,
    fewer for small n so that at least ~7 days are covered), written in constant memory.

    DATEDEBUT = start, DATEFIN = last entry day, EXTRACT = the day after at 02:30:00.
    `progress(k)` is called after each day with the number of visits it added.
    """
    path = Path(path)
    mean, counts, last, extract = _big_layout(finess, n_visits, seed, start, mean_per_day)

    def visits() -> Iterator[Visit]:
        for i, c in enumerate(counts):
            vs = visits_for_day(finess, start + timedelta(days=i), seed, mean)
            if len(vs) > c:          # the last day is cut so that the total is exact
                vs = vs[:c]
            if progress:
                progress(len(vs))
            yield from vs

    path.parent.mkdir(parents=True, exist_ok=True)
    n = write_file(path, finess, visits(), extract=extract, period=(start, last))
    assert n == n_visits, (n, n_visits)
    return path


# --------------------------------------------------------------------------------------------------
# CLI

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "synth", help="write synthetic RPU files (a region's daily files, or one big file)",
        description="Write realistic synthetic RPU 2006 files: for each establishment of the region and each "
                    "send day, the daily sliding-window file in OUT/<finess>/; or, with --visits, one big "
                    "file of N visits for benchmarks.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--region", help="region code (config/regions/CODE.yaml); default demo")
    g.add_argument("--region-file", type=Path, help="path of a region file")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--start", type=date.fromisoformat,
                   help="first send day YYYY-MM-DD (default: so that the last send day is today)")
    p.add_argument("--days", type=int, default=7, help="number of send days (default 7)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply establishment sizes (default 1)")
    p.add_argument("--errors", default="",
                   help=f"comma-separated errors to inject, each once: {','.join(ERRORS)} (or all)")
    p.add_argument("--window", type=int, default=7, help="days per daily file (default 7)")
    p.add_argument("--visits", type=int, help="write one big file of N visits instead (benchmarks)")
    p.add_argument("--finess", help="establishment of the big file (default: the region's first)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    t0 = time.monotonic()
    try:
        region = load_region(args.region_file) if args.region_file else get_region(args.region or "demo")
        errors = _check_errors(args.errors or "")
    except ValueError as exc:
        print(f"rpu synth: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.visits is not None:
        if args.visits < 0:
            print("rpu synth: --visits must be >= 0", file=sys.stderr)
            return 2
        finess = args.finess or region.establishments[0].finess
        start = args.start or date(2025, 1, 1)
        path = out / big_file_name(finess, args.visits, seed=args.seed, start=start)
        with tqdm(total=args.visits, unit="visit", unit_scale=True, disable=None, file=sys.stderr,
                  desc="synth") as bar:
            big_file(path, finess, args.visits, seed=args.seed, start=start, progress=bar.update)
        size = path.stat().st_size
        print(f"synth: 1 file, {args.visits:,} visits, {size / 1e6:,.1f} MB → {path} "
              f"({time.monotonic() - t0:.1f} s)")
        return 0
    days = args.days
    if days < 1:
        print("rpu synth: --days must be >= 1", file=sys.stderr)
        return 2
    start = args.start or (date.today() - timedelta(days=days - 1))
    try:
        planned = plan(region, start=start, days=days, seed=args.seed, scale=args.scale, errors=errors,
                       window_days=args.window)
    except ValueError as exc:
        print(f"rpu synth: {exc}", file=sys.stderr)
        return 2
    n_visits = 0
    with tqdm(total=len(planned), unit="file", disable=None, file=sys.stderr, desc="synth") as bar:
        for pf in planned:
            _, n = write_planned(out, pf, seed=args.seed, window_days=args.window)
            n_visits += n
            bar.update(1)
    print(f"synth: {len(planned)} files, {n_visits:,} visits, {len(region.establishments)} establishments of "
          f"region {region.code}, send days {start} … {start + timedelta(days=days - 1)}"
          f"{', errors ' + ','.join(errors) if errors else ''} → {out} ({time.monotonic() - t0:.1f} s)")
    return 0
