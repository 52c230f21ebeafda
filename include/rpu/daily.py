"""Daily visits per establishment over the last days, with the watch's expected band: what the dashboard draws.

Each day is judged exactly as the watch judges it (rpu.watch): its visit count against μ and σ of the same
weekday over the previous `watch_history_weeks` weeks (days with data only, after dropping the days below
μ − 2σ), the alert threshold being μ − 3σ (`rpu.watch.rules.baseline`). A day the establishment never sent is absent
(`visits` None), a day sent with no visit counts 0 — the watch's own daily counts (query watch_daily_counts).
"""
from __future__ import annotations

from datetime import date, timedelta

from rpu import store
from rpu.watch import rules
from rpu.config import Region

DAYS = 90


def series(conn, region: Region, finesses: list[str], end: date, days: int = DAYS) -> dict[str, list[dict]]:
    """{finess: [{"day", "visits" | None, "mean" | None, "sd" | None, "threshold" | None, "abnormal"}]} for the
    `days` days ending on `end` (included), one entry per day, oldest first; mean/sd/threshold None without
    enough history (rules.MIN_HISTORY days of the same weekday)."""
    first = end - timedelta(days=days - 1)
    start = first - timedelta(weeks=region.watch.history_weeks)
    counts: dict[str, dict[date, int]] = {f: {} for f in finesses}
    if finesses:
        for etab, d, visits, _expected, _coded in conn.execute(store.query("watch_daily_counts"), {
                "etabs": list(finesses), "start": start, "end": end}):
            counts.setdefault(etab.strip(), {})[d] = int(visits)
    out: dict[str, list[dict]] = {}
    for finess in finesses:
        mine = counts.get(finess, {})
        points = []
        for i in range(days):
            d = first + timedelta(days=i)
            history = [mine[h] for k in range(1, region.watch.history_weeks + 1)
                       if (h := d - timedelta(weeks=k)) in mine]
            base = rules.baseline(history)
            visits = mine.get(d)
            points.append({"day": d, "visits": visits,
                           "mean": base.mean if base else None, "sd": base.sd if base else None,
                           "threshold": base.threshold if base else None,
                           "abnormal": visits is not None and rules.is_abnormal(visits, base)})
        out[finess] = points
    return out
