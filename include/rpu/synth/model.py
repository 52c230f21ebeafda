"""The synthetic population: variants and injected errors, the Visit, and the distributions every visit is drawn
from (hours, ages, categories, places)."""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from statistics import NormalDist

from rpu import rpu_format as F

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
