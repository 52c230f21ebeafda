"""Daily sliding-window files, their variants and injected errors: a region's files planned, then written."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from rpu import rpu_format as F
from rpu.config import Establishment, Region, finess_with_key
from rpu.synth.model import (BAD_ENTREE_VALUES, ERRORS, LATE_DP_SHARE, QUALITY_CASES, REJECTED_ERRORS, _table, _TABLE_SIZE, VARIANTS, Visit)
from rpu.synth.render import extract_time, file_name, write_file
from rpu.synth.visits import _rng, visits_for_day

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
