"""What the watch tells: one mail to the ARS, a notice to each establishment's contact (queued in the outbox,
then delivered), and the findings as text for logs and `rpu watch`."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime

from rpu import mail, outbox
from rpu.config import Region
from rpu.watch.alerts import acknowledge
from rpu.watch.rules import REPRISE_AFTER_DAYS, WEEKDAYS_FR, Findings

log = logging.getLogger(__name__)


# --- mails ------------------------------------------------------------------------------------------------------

CONTACT_TEMPLATES = {   # (kind, notice) → the establishment's mail
    ("missing", "new"): "missing_transmission",
    ("missing", "reprise"): "missing_transmission",
    ("missing", "closed"): "back_to_normal",
    ("rejected", "new"): "file_rejected",
    ("shadow_ready", "new"): "shadow_ready",
}


def _sections(notices: list[dict]) -> dict[str, list[dict]]:
    s = {k: [] for k in ("declared", "missing", "reprise", "back", "rejected", "late", "quality", "abnormal",
                         "dp_drop", "ready")}
    for n in notices:
        item = {**n["details"], "etab": n["etab"], "name": n["name"], "notice": n["notice"]}
        if n["kind"] == "missing":
            never = n["key"] == "never" and n["notice"] == "new"
            s["declared" if never else {"new": "missing", "reprise": "reprise", "closed": "back"}[n["notice"]]] \
                .append(item)
        elif n["kind"] in ("rejected", "late", "quality"):
            s[n["kind"]].append(item)
        elif n["notice"] == "new":      # abnormal days, DP drops, shadow ready: told when new only
            s[{"abnormal_day": "abnormal", "dp_drop": "dp_drop", "shadow_ready": "ready"}[n["kind"]]].append(item)
    for v in s.values():
        v.sort(key=lambda x: (x.get("name") or "", x["etab"],
                              x.get("day") or x.get("received_at") or x.get("run_at") or ""))
    return s


def mails(region: Region, findings: Findings | dict, notices: list[dict]) -> list[dict]:
    """The mails to send: the ARS summary (when there are notices to tell, or every day with a daily digest)
    first, then one per establishment contact and template. Each: template, to, subject, text, html, notices."""
    f = findings.to_dict() if isinstance(findings, Findings) else findings
    out = []
    sections = _sections(notices)
    told = sum(len(v) for v in sections.values())
    told_missing = {n["etab"] for n in notices if n["kind"] == "missing"}
    ongoing = [m for m in f["missing"] if m["etab"] not in told_missing]
    common = dict(region=region, f=f, weekdays=WEEKDAYS_FR, reprise_after=REPRISE_AFTER_DAYS)
    if told or region.watch.daily_digest:
        subject, text, html = mail.render("watch_ars", s=sections, told=told, ongoing=ongoing,
                                          digest=region.watch.daily_digest, **common)
        out.append({"template": "watch_ars", "to": list(region.ars_emails), "subject": subject, "text": text,
                    "html": html, "notices": notices})
    groups: dict[tuple[str, str], list[dict]] = {}
    for n in notices:
        template = CONTACT_TEMPLATES.get((n["kind"], n["notice"]))
        if template and n["contact"]:
            groups.setdefault((n["etab"], template), []).append(n)
    for (etab, template), group in sorted(groups.items()):
        items = [{**n["details"], "notice": n["notice"]} for n in group]
        subject, text, html = mail.render(template, etab=etab, name=group[0]["name"], items=items,
                                          item=items[-1], **common)
        out.append({"template": template, "to": [group[0]["contact"]], "subject": subject, "text": text,
                    "html": html, "notices": group})
    return out


def notify(conn, region: Region, findings: Findings | dict, notices: list[dict], *,
           send: Callable[..., dict | None] | None = None, at: datetime | None = None) -> list[dict]:
    """Queue the mails in the outbox and mark the notices told, in one transaction, then deliver every pending
    mail of the region (`send(conn_id, to, subject, text, html)` → refused addresses, by default rpu.mail.send
    through the region's SMTP connection; see rpu.outbox). A mail not delivered to every address raises
    MailNotDelivered and stays pending: the retry — or the next day's run — sends it to the addresses still
    owed (at least once, never lost; never twice to an address that accepted it). Returns what was delivered
    (template, to, subject)."""
    cutoff = findings.cutoff.isoformat() if isinstance(findings, Findings) else findings["cutoff"]
    with conn.transaction():
        for m in mails(region, findings, notices):
            if not m["to"]:
                log.warning("watch %s: no ARS address (alerts.ars_none: true): %r not mailed", region.code,
                            m["subject"])
                continue
            # a retried task queues the same mails again: one per cut-off, template, addresses and notices
            key = (f"watch:{cutoff}:{m['template']}:{','.join(sorted(m['to']))}:"
                   f"{','.join(str(n['id']) for n in sorted(m['notices'], key=lambda n: n['id']))}")
            outbox.queue(conn, region, m["template"], m["to"], m["subject"], m["text"], m["html"], key=key)
        acknowledge(conn, notices, at or datetime.now(region.tz))
    return outbox.flush(conn, region, send=send)


# --- text for logs and the command line ---------------------------------------------------------------------

def _d(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return f"{value:%d/%m/%Y %H:%M}"
    return f"{value:%d/%m/%Y}"


def describe(f: Findings) -> str:
    """Findings as a few lines of French (task log, `rpu watch`): counts, dates, FINESS, file names only."""
    lines = [f"Veille {f.region_name} ({f.region}) — période du {_d(f.previous_cutoff)} au {_d(f.cutoff)} "
             f"({f.timezone})"]
    if not f.anything:
        lines.append("Rien à signaler : chaque établissement actif a transmis, aucun fichier rejeté, aucun jour "
                     "anormal.")
    for m in f.missing:
        if m.days is None:
            lines.append(f"DÉCLARÉ   {m.etab} {m.name} : pas encore en production — déclaré depuis le "
                         f"{_d(m.declared_since)} ({m.declared_days} jour(s)), aucun fichier accepté reçu à ce jour")
        else:
            lines.append(f"ABSENCE   {m.etab} {m.name} : {m.days} jour(s) sans transmission, dernier fichier accepté "
                         f"le {_d(m.last_accepted)}" + (f" — REPRISE NÉCESSAIRE (données manquantes depuis le "
                                                       f"{_d(m.lost_since)})" if m.reprise_needed else ""))
    for r in f.recovered:
        ask = ", ".join(f"le {_d(a)}" if a == b else f"du {_d(a)} au {_d(b)}" for a, b in r.reprise) or \
            "aucune (la fenêtre glissante a suffi)"
        lines.append(f"RETOUR    {r.etab} {r.name} : transmission reprise le {_d(r.back_at)} après {r.gap_days} "
                     f"jour(s) ; reprise à demander : {ask}")
    for r in f.rejected:
        why = "; ".join(x["rule"] for x in r.reasons) or "?"
        lines.append(f"REJET     {r.etab or '?'} {r.name or ''} : {r.file_name} reçu le {_d(r.received_at)} ({why})")
    for x in f.late:
        lines.append(f"RETARD    {x.etab} {x.name or ''} : {x.file_name} reçu le {_d(x.received_at)}, après la coupure "
                     f"du {_d(x.due)} (données jusqu'au {_d(x.period_end)})")
    for q in f.quality:
        what = "; ".join(f"{x['name']} ({x['description']})" for x in q.failed) or "contrôle non effectué"
        lines.append(f"QUALITÉ   {q.etab or '?'} {q.name or ''} : {q.file_name} — {what}"
                     + (" — LOT RETENU (quarantaine)" if q.quarantined else ""))
    for a in f.abnormal:
        lines.append(f"ANORMAL   {a.etab} {a.name} : {_d(a.day)} ({a.weekday}) {a.visits} passages < seuil "
                     f"{a.threshold:.1f} (μ {a.mean:.1f}, σ {a.sd:.1f}, {a.history} {a.weekday}s)")
    for d in f.dp_drops:
        days = ", ".join(f"{_d(x['day'])} {x['rate']:.0%}" for x in d.days)
        lines.append(f"DP        {d.etab} {d.name} : taux de codage du DP {days} (habituel {d.baseline_rate:.0%})")
    for s in f.shadow_ready:
        lines.append(f"BASCULE   {s.etab} {s.name} : {s.consecutive_days} jours consécutifs de transmission correcte, "
                     "prêt à basculer")
    return "\n".join(lines)
