"""Moving establishments from an older concentrator: `shadow` establishments are received, checked and stored
but not forwarded to InVS or ATIH; after SWITCH_DAYS consecutive days of correct transmission (an accepted
file received each day) one is reported "ready to switch" — then its status becomes `active` in the region
file (a one-line change) and the sends include it."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from rpu import store
from rpu.config import Region

SWITCH_DAYS = 7


def streak(days: list[date], today: date) -> int:
    """Consecutive days with an accepted file, ending today (or yesterday, before today's file arrived)."""
    have = set(days)
    cur = today if today in have else today - timedelta(days=1)
    n = 0
    while cur in have:
        n += 1
        cur -= timedelta(days=1)
    return n


def establishments(conn, region: Region, today: date | None = None) -> list[dict]:
    """Each establishment: status, last accepted file, consecutive days of correct transmission, readiness."""
    today = today or datetime.now(region.tz).date()
    since = datetime.combine(today - timedelta(days=60), datetime.min.time(), tzinfo=region.tz)
    rows = {r[0].strip(): r for r in conn.execute(store.query("transmission_days"),
                                                  {"tz": region.timezone, "since": since})}
    out = []
    for e in region.establishments:
        r = rows.get(e.finess)
        n = streak(r[1], today) if r else 0
        out.append({"finess": e.finess, "name": e.name, "status": e.status, "consecutive_days": n,
                    "last_accepted": r[2].astimezone(region.tz).isoformat(timespec="minutes") if r else None,
                    "ready_to_switch": e.status == "shadow" and n >= SWITCH_DAYS})
    return out
