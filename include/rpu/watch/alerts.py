"""The alert history of the watch (table `alert`): each finding kept under one identity, only a change of state
told (docs/watch.md)."""
from __future__ import annotations

import logging
from datetime import date, datetime

from rpu import store
from rpu.config import Region
from rpu.watch.rules import (EPISODE_KINDS, EVENT_KINDS, EtabStatus, Findings, Recovered, _jsonable, cutoffs,
                             reprise_periods)

log = logging.getLogger(__name__)


# --- the alert history ----------------------------------------------------------------------------------------

def _row(cur, r) -> dict:
    return dict(zip([c.name for c in cur.description], r))


def record(conn, region: Region, f: Findings, now: datetime | None = None) -> list[dict]:
    """Store the findings in the alert history and return the notices to mail (see docs/watch.md).

    An alert's identity is (kind, establishment, key); `dp_drop` and `shadow_ready` match the establishment's open
    alert of that kind whatever the key. A new finding opens an alert (a rejected file: a closed one, it is an
    event) with the notice `new` — `reprise` for a transmission gap already 7 days old. An open gap reaching 7
    days gets the notice `reprise` once. An open alert no longer found is closed; a closed gap gets the notice
    `closed` (back to normal, with the entry days to ask in a reprise); other kinds close silently. A closed
    alert is never reopened. A run for a past date neither closes nor changes an alert seen by a later run.
    The times stored are the run's cut-off, so re-running a date changes nothing. Notices not yet mailed (a
    failed mail) are returned again until `acknowledge` marks them."""
    from psycopg.types.json import Jsonb

    if now is not None and cutoffs(region, now)[1] != f.cutoff:
        raise ValueError(f"findings of the cut-off {f.cutoff} recorded with now={now}")
    seen = f.cutoff
    issues = f.issues()
    active = {e.finess for e in region.active}
    recovered = {r.etab: r for r in f.recovered}
    status = {s.etab: s for s in f.establishments}
    with conn.transaction():
        conn.execute(store.query("watch_lock"), {"region": region.code})
        cur = conn.execute(store.query("watch_alert_load"), {
            "region": region.code, "kinds": [i["kind"] for i in issues], "etabs": [i["etab"] for i in issues],
            "keys": [i["key"] for i in issues]})
        alerts = [_row(cur, r) for r in cur.fetchall()]
        by_id = {(a["kind"], a["etab"], a["key"]): a for a in alerts}
        episodes = {(a["kind"], a["etab"]): a for a in alerts if a["state"] == "open" and a["kind"] in EPISODE_KINDS}
        matched: set[int] = set()
        for i in issues:
            a = by_id.get((i["kind"], i["etab"], i["key"]))
            if a is None and i["kind"] in EPISODE_KINDS:
                a = episodes.get((i["kind"], i["etab"]))
            if a is None:
                event = i["kind"] in EVENT_KINDS
                conn.execute(store.query("watch_alert_insert"), {
                    "region": region.code, "kind": i["kind"], "etab": i["etab"], "key": i["key"],
                    "state": "closed" if event else "open", "seen": seen, "closed_at": seen if event else None,
                    "pending_notice": "reprise" if i["reprise"] else "new", "details": Jsonb(i["details"])})
                continue
            matched.add(a["id"])
            if a["state"] != "open" or seen < a["last_seen"]:
                continue                          # closed: never reopened; seen later: a past run changes nothing
            pending = a["pending_notice"]
            if i["reprise"] and "reprise" not in (a["notified_state"], pending):
                pending = "reprise"
            conn.execute(store.query("watch_alert_update"), {
                "id": a["id"], "state": "open", "seen": seen, "closed_at": None, "pending_notice": pending,
                "details": Jsonb(i["details"])})
        for a in alerts:
            if a["state"] != "open" or a["id"] in matched or a["first_seen"] > seen or seen < a["last_seen"]:
                continue
            details, pending = dict(a["details"]), a["pending_notice"]
            if a["kind"] == "missing":
                if a["etab"] in active:
                    details.update(_back_to_normal(conn, a, recovered.get(a["etab"]), status.get(a["etab"]), f))
                    pending = "closed"
                else:                             # no longer watched (switched to shadow, removed): no notice
                    details["closed_because"] = "not_watched"
                    pending = None
            conn.execute(store.query("watch_alert_update"), {
                "id": a["id"], "state": "closed", "seen": seen, "closed_at": seen, "pending_notice": pending,
                "details": Jsonb(details)})
        cur = conn.execute(store.query("watch_alert_pending"), {"region": region.code})
        pending_rows = [_row(cur, r) for r in cur.fetchall()]
    return [_notice(region, a) for a in pending_rows]


def _back_to_normal(conn, alert: dict, rec: Recovered | None, st: EtabStatus | None, f: Findings) -> dict:
    """What a closed transmission gap tells: when it ended, how long it lasted, what to ask in a reprise."""
    out = {"back_at": st.last_accepted.isoformat() if st and st.last_accepted else None, "closed_on": f.day.isoformat()}
    if alert["key"] == "never":
        return out | {"first_file": True, "gap_days": None, "reprise": []}
    gap_start = date.fromisoformat(alert["key"])
    if rec is not None and rec.gap_start == gap_start:
        gap_days, per = rec.gap_days, rec.reprise
    else:   # the run of the recovery did not see it (a missed run): last days counted, periods from the data
        gap_days = alert["details"].get("days")
        per = reprise_periods(conn, alert["etab"], gap_start, f.day)
    return out | {"gap_days": gap_days, "reprise": _jsonable(per)}


def _notice(region: Region, a: dict) -> dict:
    est = region.establishment(a["etab"]) if a["etab"] else None
    return _jsonable({
        "id": a["id"], "kind": a["kind"], "etab": a["etab"], "key": a["key"], "notice": a["pending_notice"],
        "name": est.name if est else a["details"].get("name"), "contact": est.contact if est else None,
        "first_seen": a["first_seen"], "details": a["details"]})


def acknowledge(conn, notices: list[dict], at: datetime) -> int:
    """Mark notices as mailed (their pending notice becomes the notified state); returns how many."""
    if not notices:
        return 0
    with conn.transaction():
        cur = conn.execute(store.query("watch_alert_ack"), {
            "ids": [n["id"] for n in notices], "notices": [n["notice"] for n in notices], "at": at})
        return cur.rowcount


def open_alerts(conn, region: Region) -> list[dict]:
    """The open alerts of the region (what a dashboard shows)."""
    cur = conn.execute(store.query("watch_open_alerts"), {"region": region.code})
    return [_row(cur, r) for r in cur.fetchall()]
