"""Server-rendered SVG charts of the dashboard (its CSP allows no script): inline <svg> markup, readable without
colour — every series has its own line style or hatching and a legend in words, every chart a <title> and a
<desc> (aria-labelledby), every point or bar a <title> with its figures and data-* attributes with its values
(the browser tests compare them with the tables of the page)."""
from __future__ import annotations

import math
from datetime import date

from markupsafe import Markup, escape

MONTHS_FR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.")
INK, MUTED, BAND = "#1f2933", "#616e7c", "#52606d"


def _n(value: float) -> str:
    """A French number: thin space for thousands, comma for decimals (one decimal at most)."""
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}".replace(",", "\u202f")
    return f"{value:,.1f}".replace(",", "\u202f").replace(".", ",")


def _one(value: float) -> str:
    """One decimal, French (as the table under the chart shows it)."""
    return f"{value:.1f}".replace(".", ",")


def _d(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _top(value: float) -> float:
    """A round upper bound of the axis (1, 2, 2.5 or 5 × 10^k)."""
    if value <= 0:
        return 1
    k = 10 ** math.floor(math.log10(value))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= value)


def _pts(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _runs(items: list, keep) -> list[list]:
    """Consecutive runs of the items for which keep(item) is true."""
    runs, cur = [], []
    for it in items:
        if keep(it):
            cur.append(it)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def daily_chart(finess: str, name: str, points: list[dict], history_weeks: int) -> Markup:
    """Daily visits of one establishment (rpu.daily.series) with the watch's expected band μ ± 3σ, its mean,
    and the days under μ − 3σ (the watch's abnormal days) marked by a triangle."""
    uid = f"daily-{escape(finess)}"
    width, height, left, right, top, bottom = 760, 230, 48, 12, 34, 36
    pw, ph = width - left - right, height - top - bottom
    n = max(len(points), 2)
    vmax = _top(max([p["visits"] or 0 for p in points]
                    + [p["mean"] + 3 * p["sd"] for p in points if p["mean"] is not None] + [1]))

    def x(i: int) -> float:
        return left + i * pw / (n - 1)

    def y(v: float) -> float:
        return top + (1 - max(0.0, min(v, vmax)) / vmax) * ph

    idx = list(enumerate(points))
    received = [p for p in points if p["visits"] is not None]
    abnormal = [p for p in points if p["abnormal"]]
    first, last = points[0]["day"], points[-1]["day"]
    title = f"Passages quotidiens — {name} ({finess}), du {_d(first)} au {_d(last)}"
    desc = (f"{len(received)} jour(s) reçu(s) sur {len(points)}, {len(abnormal)} journée(s) sous le seuil de la "
            f"veille. Trait plein et points : passages par jour. Zone hachurée : bande attendue de la veille, "
            f"μ ± 3σ du même jour de la semaine sur les {history_weeks} semaines précédentes ; tirets : μ. "
            f"Triangle : journée sous μ − 3σ (alerte de la veille). Jour sans point : aucune donnée reçue.")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart daily" data-finess="{escape(finess)}" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-labelledby="{uid}-t {uid}-d">',
           f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>',
           f'<defs><pattern id="{uid}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="{BAND}" stroke-width="1.2"/>'
           f'</pattern></defs>']
    # axes and grid
    for v in (0, vmax / 2, vmax):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#d9dee4"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">'
                   f'{_n(v)}</text>')
    for i, p in idx:
        if p["day"].day == 1 or i == 0:
            out.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="{MUTED}"/>'
                       f'<text x="{x(i):.1f}" y="{top + ph + 16}" font-size="11" fill="{MUTED}">'
                       f'{p["day"].day} {MONTHS_FR[p["day"].month - 1]}</text>')
    # the expected band and its mean, where the watch has a baseline
    for run in _runs(idx, lambda it: it[1]["mean"] is not None):
        upper = [(x(i), y(p["mean"] + 3 * p["sd"])) for i, p in run]
        lower = [(x(i), y(max(0.0, p["threshold"]))) for i, p in reversed(run)]
        out.append(f'<polygon class="band" points="{_pts(upper + lower)}" fill="url(#{uid}-hatch)" '
                   f'fill-opacity="0.55" stroke="{BAND}" stroke-width="0.6"/>')
        out.append(f'<polyline class="mean" points="{_pts([(x(i), y(p["mean"])) for i, p in run])}" fill="none" '
                   f'stroke="{BAND}" stroke-width="1.2" stroke-dasharray="5 3"/>')
    # the visits
    for run in _runs(idx, lambda it: it[1]["visits"] is not None):
        if len(run) > 1:
            out.append(f'<polyline class="visits" points="{_pts([(x(i), y(p["visits"])) for i, p in run])}" '
                       f'fill="none" stroke="{INK}" stroke-width="1.6"/>')
    for i, p in idx:
        if p["visits"] is None:
            continue
        tip = f"{_d(p['day'])} : {_n(p['visits'])} passage(s)"
        if p["mean"] is not None:
            tip += f" (attendu ≈ {_one(p['mean'])}, seuil μ − 3σ {_one(p['threshold'])})"
        if p["abnormal"]:
            tip += " — sous le seuil : journée anormale"
            cx, cy = x(i), y(p["visits"])
            shape = (f'<path class="point abnormal" d="M{cx:.1f},{cy - 6:.1f} L{cx + 6:.1f},{cy + 5:.1f} '
                     f'L{cx - 6:.1f},{cy + 5:.1f} Z" fill="#fff" stroke="{INK}" stroke-width="1.5"')
        else:
            shape = f'<circle class="point" cx="{x(i):.1f}" cy="{y(p["visits"]):.1f}" r="2.2" fill="{INK}"'
        out.append(f'{shape} data-day="{p["day"].isoformat()}" data-visits="{p["visits"]}" '
                   f'data-abnormal="{"yes" if p["abnormal"] else "no"}"><title>{escape(tip)}</title>'
                   f'{"</path>" if p["abnormal"] else "</circle>"}')
    if not received:
        out.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph / 2:.0f}" text-anchor="middle" font-size="13" '
                   f'fill="{MUTED}">aucune donnée reçue sur la période</text>')
    # legend, in words
    lx = left
    out.append(f'<g class="legend" font-size="11" fill="{INK}">'
               f'<line x1="{lx}" x2="{lx + 22}" y1="12" y2="12" stroke="{INK}" stroke-width="1.6"/>'
               f'<text x="{lx + 27}" y="16">passages / jour</text>'
               f'<rect x="{lx + 130}" y="6" width="22" height="12" fill="url(#{uid}-hatch)" stroke="{BAND}" '
               f'stroke-width="0.6"/><text x="{lx + 157}" y="16">bande attendue μ ± 3σ</text>'
               f'<line x1="{lx + 300}" x2="{lx + 322}" y1="12" y2="12" stroke="{BAND}" stroke-dasharray="5 3"/>'
               f'<text x="{lx + 327}" y="16">μ (moyenne attendue)</text>'
               f'<path d="M{lx + 470},6 L{lx + 476},17 L{lx + 464},17 Z" fill="#fff" stroke="{INK}"/>'
               f'<text x="{lx + 482}" y="16">sous μ − 3σ (alerte)</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def national_bars(grid: dict, months: int = 12) -> Markup:
    """The national grid (rpu.national.report.grid) as bars: one band per region, one bar per month M1…M`months`
    whose height is the RPU received, labelled with its value; the files in each bar's <title>."""
    regions = grid["regions"]
    by = {(r["region"], r["month"]): r for r in grid["rows"]}
    shown = list(range(1, months + 1))
    label_w, bar_w, gap, row_h, top, bottom = 200, 30, 14, 70, 10, 26
    width = label_w + len(shown) * (bar_w + gap) + 10
    height = top + max(1, len(regions)) * row_h + bottom
    vmax = _top(max([r["rpu"] for r in grid["rows"] if r["month"] in shown] + [1]))
    title = f"RPU reçus par l'ATIH par région et par mois, {grid['year']}"
    desc = ("Une bande par région, une barre par mois M (fichiers cumulés qui complètent le mois) ; la hauteur "
            f"est le nombre de RPU, écrit au-dessus de la barre ; échelle commune, maximum {_n(vmax)}.")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart national" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-labelledby="national-bars-t national-bars-d">',
           f'<title id="national-bars-t">{escape(title)}</title><desc id="national-bars-d">{escape(desc)}</desc>']
    inner = row_h - 22
    for k, reg in enumerate(regions):
        base_y = top + k * row_h + row_h - 6
        out.append(f'<g class="region" data-region="{escape(reg["region"])}" '
                   f'aria-label="{escape(reg["region_name"])}">'
                   f'<text x="4" y="{base_y - inner / 2:.0f}" font-size="12" fill="{INK}">'
                   f'{escape(reg["region_name"])}</text>'
                   f'<line x1="{label_w - 4}" x2="{width - 10}" y1="{base_y}" y2="{base_y}" stroke="{MUTED}"/>')
        for j, m in enumerate(shown):
            r = by[(reg["region"], m)]
            h = inner * r["rpu"] / vmax
            bx = label_w + j * (bar_w + gap)
            tip = (f"{reg['region_name']} — M{m} : {_n(r['rpu'])} RPU, {_n(r['files'])} fichier(s), "
                   f"{_n(r['establishments'])} établissement(s)")
            out.append(f'<rect class="bar" x="{bx}" y="{base_y - h:.1f}" width="{bar_w}" height="{h:.1f}" '
                       f'fill="{BAND}" data-region="{escape(reg["region"])}" data-month="{m}" data-rpu="{r["rpu"]}" '
                       f'data-files="{r["files"]}"><title>{escape(tip)}</title></rect>')
            if r["rpu"]:
                out.append(f'<text x="{bx + bar_w / 2}" y="{base_y - h - 3:.1f}" text-anchor="middle" '
                           f'font-size="10" fill="{INK}">{_n(r["rpu"])}</text>')
        out.append("</g>")
    for j, m in enumerate(shown):
        out.append(f'<text x="{label_w + j * (bar_w + gap) + bar_w / 2}" y="{height - 8}" text-anchor="middle" '
                   f'font-size="11" fill="{MUTED}">M{m}</text>')
    out.append("</svg>")
    return Markup("".join(out))
