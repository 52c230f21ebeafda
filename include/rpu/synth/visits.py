"""The visits of one establishment and entry day, deterministic in (FINESS, day, seed)."""
from __future__ import annotations

import math
import random
from datetime import date

from rpu.synth.model import (HHMM, _AGE_TABLES, _BAND, _CAT_TABLES, _CHEST_XRAY, _DA_CODES, _DSTR, _ECG, _GYNECO,
                            _HOME_ORIENT, _HOSP_BY_GRAVITE, _HOUR_TABLES, _MODE_ENTREE, _NORMAL, _N_DA, _N_DA_OLD,
                            _PEC, _PROVENANCE, _PSY_ORIENT, _SEXE, _TABLE_SIZE, _TRANSPORT_BY_GRAVITE, _UNSEEN,
                            _WEEKDAY_FACTOR, Visit, _date_str, _places)

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
