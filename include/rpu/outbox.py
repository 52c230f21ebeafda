"""Mails that must not be lost: queued in the regional database (table mail_outbox), then delivered.

`queue` records a rendered mail; `flush` tries every pending mail of the region, oldest first, each to the
addresses it still owes:

- an address the SMTP server accepts is done;
- an address refused for now (4xx), or a server that cannot be reached, stays owed: `flush` raises
  `MailNotDelivered` (the task fails and Airflow retries it), and the next flush — a retry, or the next run of
  any DAG that mails, such as tomorrow's watch — sends it; a mail is never sent twice to an address that
  accepted it;
- an address refused for good (5xx) is not tried again for that mail, and is told once to the region's
  operations (`alerts.ops`, mail `mail_refused`) — not at every mail, nor every day.

No Airflow import here; sending goes through rpu.mail (Airflow's SMTP connection).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from rpu import mail, store
from rpu.config import Region

log = logging.getLogger(__name__)

REFUSAL_TEMPLATE = "mail_refused"


class MailNotDelivered(RuntimeError):
    """Some addresses are still owed a mail (server down, or refused for now): kept pending, tried again."""


def queue(conn, region: Region, template: str, to: list[str], subject: str, text: str, html: str, *,
          key: str | None = None) -> int | None:
    """Record a mail to send; returns its id — None when a mail with the same `key` was already queued (the
    retry of a task that had queued it)."""
    to = [a for a in dict.fromkeys(to) if a]
    if not to:
        raise ValueError("no recipient address")
    row = conn.execute(store.query("outbox_queue"), {"region": region.code, "template": template, "key": key,
                                                     "to": to, "subject": subject, "text": text,
                                                     "html": html}).fetchone()
    return row[0] if row else None


def _attempt(conn, region: Region, mail_id: int, send: Callable) -> dict | None:
    """One delivery attempt of one mail, under its row lock; returns what happened (None: nothing to do)."""
    from psycopg.types.json import Jsonb

    with conn.transaction():
        cur = conn.execute(store.query("outbox_take"), {"id": mail_id})
        row = cur.fetchone()
        if row is None:
            return None
        m = dict(zip([c.name for c in cur.description], row))
        owed = [a for a in m["recipients"] if a not in m["delivered"] and a not in m["refused"]]
        error, refused = None, {}
        if owed:
            try:
                refused = send(region.smtp_conn_id, owed, m["subject"], m["body_text"], m["body_html"]) or {}
            except Exception as exc:   # server down, login refused…: everything still owed
                error = f"{type(exc).__name__}: {exc}"[:500]
        accepted = [] if error else [a for a in owed if a not in refused]
        final = {a: {"code": c, "message": msg[:300]} for a, (c, msg) in refused.items() if c >= 500}
        later = {a: f"{c} {msg}"[:200] for a, (c, msg) in refused.items() if c < 500}
        if later:
            error = "refused for now: " + "; ".join(f"{a} ({r})" for a, r in later.items())
        conn.execute(store.query("outbox_result"), {
            "id": mail_id, "delivered": accepted, "refused": Jsonb(final), "error": error,
            "state": "pending" if error else "done"})
        if accepted:
            conn.execute(store.query("refusal_clear"), {"region": region.code, "addresses": accepted})
        if m["template"] != REFUSAL_TEMPLATE:   # a refused operations address is only logged: no loop
            for a, r in final.items():
                conn.execute(store.query("refusal_record"), {"region": region.code, "address": a, "code": r["code"],
                                                             "message": r["message"], "template": m["template"]})
    for a, r in final.items():
        log.warning("mail %s (%s): %s refused for good (%s %s), not tried again", mail_id, m["template"], a,
                    r["code"], r["message"])
    return {"id": mail_id, "template": m["template"], "subject": m["subject"], "to": accepted,
            "refused": sorted(final), "owed": [a for a in owed if a not in accepted and a not in final],
            "error": error}


def _report_refusals(conn, region: Region) -> int | None:
    """Queue one mail to operations about the addresses refused for good and not yet told (then told); its id."""
    with conn.transaction():
        cur = conn.execute(store.query("refusal_unreported"), {"region": region.code})
        rows = [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]
        if not rows:
            return None
        if not region.ops_emails:
            log.warning("region %s: addresses refused by the mail server, and no operations address (alerts.ops) "
                        "to tell: %s", region.code, ", ".join(r["address"] for r in rows))
            return None
        for r in rows:
            r["first_refused"] = r["first_refused"].astimezone(region.tz)
        subject, text, html = mail.render(REFUSAL_TEMPLATE, region=region, refusals=rows)
        return queue(conn, region, REFUSAL_TEMPLATE, list(region.ops_emails), subject, text, html)


def flush(conn, region: Region, *, send: Callable | None = None) -> list[dict]:
    """Deliver the region's pending mails (see the module's doc). Returns what was delivered in this flush:
    template, subject, to (the addresses that accepted it); raises MailNotDelivered when addresses are still
    owed, after trying every mail."""
    send = send or mail.send
    done, owed = [], []
    ids = [r[0] for r in conn.execute(store.query("outbox_pending"), {"region": region.code}).fetchall()]
    while ids:
        for mail_id in ids:
            r = _attempt(conn, region, mail_id, send)
            if r is None:
                continue
            if r["to"]:
                done.append({"template": r["template"], "to": r["to"], "subject": r["subject"]})
            if r["error"]:
                owed.append(f"{r['template']} #{r['id']} to {', '.join(r['owed'])}: {r['error']}")
        report = _report_refusals(conn, region)     # the addresses just refused for good, told at once
        ids = [report] if report else []
    if owed:
        raise MailNotDelivered(f"{len(owed)} mail(s) kept pending, sent again at the next try: " + " | ".join(owed))
    return done


def pending(conn, region: Region) -> list[dict]:
    """The region's mails still owed to someone (what a retry or the next run will send)."""
    cur = conn.execute(store.query("outbox_list"), {"region": region.code})
    return [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]
