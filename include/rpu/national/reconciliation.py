"""Automatic reconciliation: every file a region's send ledger says it sent to ATIH, against what the Syrius
platform received (the national database).

For each file name sent (its latest send), in this order:

- received with the same sha256 and the same RPU count → `conforme` ("reçu, conforme");
- received, refused by the platform → `refuse`;
- received (same name) with another count or another content → `ecart`;
- not received `missing_after_hours` hours after the send → `non_recu`; before that → `en_attente`.

A send not conforming (`ecart`, `refuse`, `non_recu`) is mailed once (per status) to ATIH operations and to
the region's ARS, through the outbox of the national database. The CLI (`rpu report reconciliation`), the
`syrius_reception` DAG and the dashboard call these functions.
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone

from rpu import store
from rpu.config import Region
from rpu.national import schema
from rpu.national.settings import National

log = logging.getLogger(__name__)

LABELS = {"conforme": "reçu, conforme", "ecart": "écart", "refuse": "refusé", "non_recu": "non reçu",
          "en_attente": "en attente"}
NOT_CONFORMING = ("ecart", "refuse", "non_recu")
# a month's cell takes the worst status of its files
SEVERITY = {"conforme": 0, "en_attente": 1, "ecart": 3, "refuse": 3, "non_recu": 2}
SYMBOLS = {"conforme": "✓", "en_attente": "…", "ecart": "≠", "refuse": "✗", "non_recu": "∅"}


def _judge(sent: dict, received: list[dict], now: datetime, after: timedelta) -> tuple[str, dict | None]:
    same = [r for r in received if r["sha256"] == sent["sha256"]]
    for r in reversed(same):
        if r["status"] == "rejected":
            return "refuse", r
        return ("conforme" if r["rpu"] == sent["visits"] else "ecart"), r
    later = [r for r in received if r["received_at"] >= sent["sent_at"] - timedelta(minutes=5)]
    if later:
        r = later[-1]
        return ("refuse" if r["status"] == "rejected" else "ecart"), r
    return ("non_recu" if now - sent["sent_at"] > after else "en_attente"), None


def reconcile(region_conn, national_conn, national: National, region: Region, year: int, *,
              now: datetime | None = None) -> dict:
    """{"region", "year", "missing_after_hours", "rows": [{"ledger_id", "file_name", "finess", "ordre", "kind",
    "period_end", "month", "sent_visits", "sent_at", "status", "label", "received_rpu", "received_at", "rule"}],
    "months": {"1".."12": {"status", "label", "files", "counts": {status: n}}}} — months without a send absent."""
    now = now or datetime.now(timezone.utc)
    after = timedelta(hours=national.missing_after_hours)
    sent = schema.rows(region_conn.execute(schema.query("ledger_atih_sent"), {"year": year}))
    received: dict[str, list[dict]] = {}
    if sent:
        for r in schema.rows(national_conn.execute(schema.query("received_by_name"),
                                                   {"region": region.code, "names": [s["file_name"] for s in sent]})):
            received.setdefault(r["file_name"], []).append(r)
    rows = []
    for s in sorted(sent, key=lambda s: (s["period_end"], s["file_name"])):
        status, r = _judge(s, received.get(s["file_name"], []), now, after)
        rows.append({"ledger_id": s["id"], "file_name": s["file_name"], "finess": s["finess"], "ordre": s["ordre"],
                     "kind": s["kind"], "period_end": s["period_end"].isoformat(), "month": s["period_end"].month,
                     "sent_visits": s["visits"], "sent_at": s["sent_at"].astimezone(region.tz).isoformat(
                         timespec="seconds"),
                     "status": status, "label": LABELS[status], "received_rpu": r["rpu"] if r else None,
                     "received_at": r["received_at"].astimezone(region.tz).isoformat(timespec="seconds")
                     if r else None, "rule": r["rule"] if r else None})
    return {"report": "reconciliation", "region": region.code, "region_name": region.name, "year": year,
            "missing_after_hours": national.missing_after_hours, "rows": rows, "months": months_of(rows)}


def months_of(rows: list[dict]) -> dict[str, dict]:
    """The month cells of reconciled rows: {"1".."12": {"status", "label", "files", "counts"}}, each month (of
    the file's period end) taking the worst status of its files; months without a send absent."""
    months: dict[str, dict] = {}
    for row in rows:
        m = months.setdefault(str(row["month"]), {"status": "conforme", "files": 0, "counts": {}})
        m["files"] += 1
        m["counts"][row["status"]] = m["counts"].get(row["status"], 0) + 1
        if SEVERITY[row["status"]] > SEVERITY[m["status"]]:
            m["status"] = row["status"]
    for m in months.values():
        m["label"] = LABELS[m["status"]]
    return months


def reconcile_urls(region_db: str, national_db: str, national: National, region: Region, year: int, **kw) -> dict:
    with store.connection(region_db) as rc, store.connection(national_db) as nc:
        return reconcile(rc, nc, national, region, year, **kw)


def tell(national_conn, national: National, region: Region, result: dict, *, send=None) -> list[dict]:
    """Mail the sends not conforming that were not told yet (once per send and status) to ATIH operations and
    the region's ARS: one mail for those found in this run, queued in the national outbox then flushed. Returns
    the rows told now."""
    from rpu import mail, outbox

    bad = [r for r in result["rows"] if r["status"] in NOT_CONFORMING]
    if not bad:
        return []
    to = list(dict.fromkeys(list(national.ops_emails) + list(region.ars_emails)))
    me = national.as_region()
    with national_conn.transaction():
        new = [r for r in bad if national_conn.execute(schema.query("told_insert"), {
            "region": region.code, "ledger_id": r["ledger_id"], "status": r["status"],
            "file_name": r["file_name"]}).fetchone()]
        if new and to:
            subject, text, html = mail.render("atih_reconciliation", region=region, rows=new, year=result["year"],
                                              hours=national.missing_after_hours)
            key = "reconciliation:" + hashlib.sha256(json.dumps(
                [(region.code, r["ledger_id"], r["status"]) for r in new]).encode()).hexdigest()[:32]
            outbox.queue(national_conn, me, "atih_reconciliation", to, subject, text, html, key=key)
        elif new:
            log.warning("region %s: %s send(s) not conforming and no address to tell (national alerts.ops, region "
                        "alerts.ars)", region.code, len(new))
    if new and to:
        try:
            outbox.flush(national_conn, me, send=send)
        except outbox.MailNotDelivered as exc:
            log.warning("reconciliation mail of region %s kept in the outbox: %s", region.code, exc)
    return new


def render(result: dict, fmt: str = "table") -> str:
    """The reconciliation as a table (French), CSV or JSON."""
    import csv
    import io

    cols = ["file_name", "finess", "ordre", "kind", "period_end", "sent_visits", "sent_at", "status",
            "received_rpu", "received_at", "rule"]
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=";", lineterminator="\n")
        w.writerow(cols)
        for r in result["rows"]:
            w.writerow([r[c] for c in cols])
        return buf.getvalue()
    head = ["Fichier", "Période fin", "Envoyés", "Reçus ATIH", "Statut"]
    table = [[r["file_name"], r["period_end"], str(r["sent_visits"]),
              "—" if r["received_rpu"] is None else str(r["received_rpu"]),
              f"{SYMBOLS[r['status']]} {r['label']}" + (f" [{r['rule']}]" if r["rule"] else "")]
             for r in result["rows"]]
    widths = [max(len(x[i]) for x in [head] + table) for i in range(len(head))]
    out = [f"Rapprochement ATIH — région {result['region_name']} ({result['region']}), année {result['year']} "
           f"(non reçu après {result['missing_after_hours']:g} h)"]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [head] + table]
    if not table:
        out.append("(aucun fichier envoyé à l'ATIH pour cette année)")
    return "\n".join(out) + "\n"
