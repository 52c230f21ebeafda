"""Reprise: the ARS asks for one establishment's stored data of a period to be sent again.

Three steps, each a task of the `<region>_reprise` DAG and plain functions here:
  `validate` — the trigger form → a `ReprisePlan`, or a `RepriseError` saying in French what to correct;
  `run`      — each file of `exports.reprise_specs` is prepared once, recorded in the send ledger (kind
               `reprise`) and uploaded through `sends.send`; a simulation (dry run) only counts the visits
               each file would hold and records nothing;
  `summary_mail` — the summary mailed to the ARS (counts, dates, FINESS, file names: no patient data),
               through the outbox (`mail_ars`): kept pending while the SMTP server is down, sent when it is
               back (by a retry, or by the next run of a DAG that mails, such as the daily watch).
When a run fails, the ARS is told as well: `refusal_mail` for a form `validate` refused, or the summary of
what the send ledger holds for the run (`recorded`) once `send` has failed for good.
"""
from __future__ import annotations

import logging
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable

from rpu import exports, mail, outbox, sends, store
from rpu.config import Region

log = logging.getLogger(__name__)

MAX_DAYS = 366
RECIPIENTS = ("invs", "atih", "ars")           # the order of the files and of the form's choices
RECIPIENT_LABELS = {
    "invs": "InVS / Santé publique France (OSCOUR)",
    "atih": "ATIH (fichier anonymisé, cumul depuis le 1er janvier)",
    "ars": "ARS (export à plat de l'établissement)",
}
STATUS_LABELS = {
    "sent": "envoyé",
    "prepared": "préparé, non envoyé",
    "failed": "ÉCHEC de l'envoi",
    "simulation": "simulation, non envoyé",
    "count_failed": "ÉCHEC du comptage",
}
FAILED = ("failed", "count_failed")
# the trigger form's words for each recipient (what the ARS chooses from)
FORM_RECIPIENT_LABELS = {
    "invs": "InVS / Santé publique France (un fichier par mois)",
    "atih": "ATIH (fichier anonymisé, cumul depuis le 1er janvier)",
    "ars": "ARS (export à plat de l'établissement)",
}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RepriseError(ValueError):
    """The reprise form is not valid; `problems` are French sentences saying what to correct."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"Formulaire de reprise invalide : {self.problems[0]}"
        else:
            text = "Formulaire de reprise invalide :\n" + "\n".join(f"- {p}" for p in self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class ReprisePlan:
    """A checked request: one establishment, a period of entry dates, recipients."""
    region: str
    etab: str
    etab_name: str
    start: date
    end: date
    recipients: tuple[str, ...]
    dry_run: bool
    today: date          # the day of the request in the region's time zone (what "in the future" means)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def to_dict(self) -> dict:
        """JSON-able (passed between tasks)."""
        return {"region": self.region, "etab": self.etab, "etab_name": self.etab_name,
                "start": self.start.isoformat(), "end": self.end.isoformat(), "recipients": list(self.recipients),
                "dry_run": self.dry_run, "today": self.today.isoformat()}

    @classmethod
    def from_dict(cls, d: dict) -> "ReprisePlan":
        return cls(region=d["region"], etab=d["etab"], etab_name=d["etab_name"],
                   start=date.fromisoformat(d["start"]), end=date.fromisoformat(d["end"]),
                   recipients=tuple(d["recipients"]), dry_run=bool(d["dry_run"]),
                   today=date.fromisoformat(d["today"]))


def form(region: Region) -> dict[str, dict]:
    """The trigger form of the `<code>_reprise` DAG: each field as the keyword arguments of an Airflow Param
    (French titles and help, the region's establishments, the recipients, the MAX_DAYS limit)."""
    choices = {e.finess: f"{e.name} ({e.finess})" + (" — en ombre : ARS seulement" if e.status == "shadow" else "")
               for e in region.establishments}
    return {
        "establishment": dict(
            type="string", enum=list(choices), values_display=choices, title="Établissement",
            description="L'établissement dont les données sont à renvoyer (nom et FINESS géographique)."),
        "start_date": dict(
            type="string", format="date", title="Date de début",
            description="Premier jour à renvoyer (date d'entrée aux urgences, incluse)."),
        "end_date": dict(
            type="string", format="date", title="Date de fin",
            description=f"Dernier jour à renvoyer (inclus) : au plus aujourd'hui ; la période compte au plus "
                        f"{MAX_DAYS} jours, bornes comprises."),
        "recipients": dict(
            default=["invs"], type="array", title="Destinataires", minItems=1, uniqueItems=True,
            items={"type": "string", "enum": list(FORM_RECIPIENT_LABELS)},
            examples=list(FORM_RECIPIENT_LABELS),   # the trigger form's multi-select offers these
            values_display=FORM_RECIPIENT_LABELS,
            description="À qui renvoyer : InVS par défaut ; ATIH et ARS en plus si besoin."),
        "dry_run": dict(
            default=False, type="boolean", title="Simulation (rien n'est envoyé)",
            description="Cochée : compte seulement ce qui serait envoyé et l'écrit dans le courriel, "
                        "sans rien préparer, envoyer ni enregistrer."),
    }


def today_in(region: Region, now: datetime | None = None) -> date:
    """Today's date in the region's time zone (what "in the future" is judged against)."""
    now = now or datetime.now(region.tz)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(region.tz).date()


def _fr(d: date) -> str:
    return f"{d:%d/%m/%Y}"


def _parse_date(value, label: str, problems: list[str]) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        problems.append(f"{label} manquante (format AAAA-MM-JJ, par exemple 2026-03-01).")
        return None
    text = str(value).strip()
    try:
        if not _ISO_DATE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"{label} invalide : « {text} » n'est pas une date au format AAAA-MM-JJ "
                        "(par exemple 2026-03-01).")
        return None


def _establishment(region: Region, value, problems: list[str]):
    finess = str(value).strip() if value is not None else ""
    if not finess:
        problems.append("établissement manquant : choisissez l'établissement (FINESS) dont les données sont "
                        "à renvoyer.")
        return None
    site = next((e for e in region.establishments if e.finess == finess), None)
    if site:
        return site
    sites = [e for e in region.establishments if e.finess_ej == finess]
    if sites:
        problems.append(f"« {finess} » est un FINESS juridique (EJ) : choisissez le site (FINESS géographique) "
                        "concerné : " + ", ".join(f"{e.name} ({e.finess})" for e in sites) + ".")
    else:
        problems.append(f"établissement inconnu : « {finess} » n'est pas un FINESS déclaré dans la région "
                        f"{region.name} ({region.code}).")
    return None


def _recipients(value, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    wanted = [str(v).strip().lower() for v in value if v is not None and str(v).strip()]
    unknown = [v for v in wanted if v not in RECIPIENTS]
    if unknown:
        choices = ", ".join(f"{k} = {RECIPIENT_LABELS[k]}" for k in RECIPIENTS)
        problems.append(f"destinataire inconnu : {', '.join(f'« {u} »' for u in unknown)} (choix possibles : "
                        f"{choices}).")
    elif not wanted:
        problems.append("aucun destinataire choisi : choisissez au moins l'InVS, l'ATIH ou l'ARS.")
    return tuple(r for r in RECIPIENTS if r in wanted)


def _dry_run(value, problems: list[str]) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "oui", "non", "1", "0"):
        return value.strip().lower() in ("true", "oui", "1")
    problems.append(f"simulation : valeur attendue vrai ou faux, reçu « {value} ».")
    return False


def validate(region: Region, params: dict, today: date) -> ReprisePlan:
    """The trigger form → a plan; every problem found is reported at once, in French.

    `params`: establishment (FINESS of a site), start_date and end_date (AAAA-MM-JJ, entry dates, both
    included), recipients (list of invs / atih / ars), dry_run. `today` is the date in the region's time
    zone (see `today_in`): the end date may be today, not later; the period is at most 366 days."""
    problems: list[str] = []
    site = _establishment(region, params.get("establishment"), problems)
    start = _parse_date(params.get("start_date"), "date de début", problems)
    end = _parse_date(params.get("end_date"), "date de fin", problems)
    recipients = _recipients(params.get("recipients", ["invs"]), problems)
    dry_run = _dry_run(params.get("dry_run", False), problems)

    if start and end:
        if end < start:
            problems.append(f"la date de fin ({_fr(end)}) est antérieure à la date de début ({_fr(start)}).")
        elif (end - start).days + 1 > MAX_DAYS:
            problems.append(f"période trop longue : {(end - start).days + 1} jours du {_fr(start)} au {_fr(end)} ; "
                            f"une reprise couvre au plus {MAX_DAYS} jours (un an). Faites plusieurs reprises.")
    if end and end > today:
        problems.append(f"la date de fin ({_fr(end)}) est dans le futur : nous sommes le {_fr(today)} "
                        f"({region.timezone}). Une reprise ne renvoie que des jours passés ou le jour même.")
    if site and site.status == "shadow" and set(recipients) & {"invs", "atih"}:
        problems.append(f"{site.name} ({site.finess}) est encore « en ombre » : l'ancien concentrateur transmet "
                        "ses données à l'InVS et à l'ATIH ; pour cet établissement, seule l'ARS peut être "
                        "choisie.")
    if problems:
        raise RepriseError(problems)
    assert site and start and end
    return ReprisePlan(region=region.code, etab=site.finess, etab_name=site.name, start=start, end=end,
                       recipients=recipients, dry_run=dry_run, today=today)


def specs(conn, region: Region, plan: ReprisePlan) -> list[exports.FileSpec]:
    """The files of a reprise (see exports.reprise_specs): InVS one per month and FINESS_ordre, ATIH cumulative,
    ARS flat — never declaring a day with no data or held back."""
    return exports.reprise_specs(conn, region, plan.etab, plan.start, plan.end, plan.recipients)


def _file(spec: exports.FileSpec, visits, status: str) -> dict:
    return {"recipient": spec.recipient, "file_name": spec.file_name, "period_start": spec.start.isoformat(),
            "period_end": spec.end.isoformat(), "visits": visits, "status": status,
            "held_back": [d.isoformat() for d in spec.held_back]}


def run(region: Region, plan: ReprisePlan, run_id: str, db_url: str,
        open_remote_for: Callable[[str], AbstractContextManager], dry_run: bool, *,
        requested_at: str | None = None, requested_by: str | None = None) -> dict:
    """Send (or, dry run, only count) every file of the reprise; returns the summary.

    Sending: each file goes through `sends.send` (prepared once into the outbox, recorded in the ledger with
    kind `reprise`, uploaded atomically to `open_remote_for(recipient)`). A file that fails does not stop the
    others; it is `failed` in the summary (the reason is in the log only) and `failed_files(summary)` is not
    empty — the caller raises, and a retry with the same run id re-sends only what is missing.
    Dry run: a COUNT per file, nothing built, nothing recorded, nothing uploaded."""
    files = []
    with store.connection(db_url) as conn:
        planned = specs(conn, region, plan)
        if dry_run:
            for spec in planned:
                (n,) = conn.execute(store.query("reprise_count"), {"etab": spec.etab, "ordre": spec.ordre,
                                                                   "start": spec.start, "end": spec.end}).fetchone()
                files.append(_file(spec, n, "simulation"))
                log.info("simulation: %s to %s would hold %s visits", spec.file_name, spec.recipient, n)
    if not dry_run:
        for spec in planned:
            try:
                out = sends.send(region, spec, run_id, db_url, lambda r=spec.recipient: open_remote_for(r))
                files.append(_file(spec, out["visits"], out["status"]))
            except Exception:
                log.exception("reprise: %s to %s failed", spec.file_name, spec.recipient)
                files.append(_file(spec, None, "failed"))
    return summarize(region, plan, files, run_id=run_id, dry_run=dry_run, requested_at=requested_at,
                     requested_by=requested_by)


def summarize(region: Region, plan: ReprisePlan, files: list[dict], *, run_id: str, dry_run: bool,
              requested_at: str | None = None, requested_by: str | None = None) -> dict:
    by_recipient = {r: {"files": 0, "visits": 0} for r in plan.recipients}
    for f in files:
        by_recipient[f["recipient"]]["files"] += 1
        by_recipient[f["recipient"]]["visits"] += f["visits"] or 0
    statuses = [f["status"] for f in files]
    return {
        "region": region.code, "region_name": region.name,
        "etab": plan.etab, "etab_name": plan.etab_name,
        "start": plan.start.isoformat(), "end": plan.end.isoformat(), "days": plan.days,
        "recipients": list(plan.recipients), "dry_run": dry_run,
        "run_id": run_id, "requested_at": requested_at, "requested_by": requested_by,
        "files": files,
        "totals": {"files": len(files), "sent": statuses.count("sent"), "failed": sum(map(statuses.count, FAILED)),
                   "simulated": statuses.count("simulation"), "by_recipient": by_recipient},
    }


def failed_files(summary: dict) -> list[str]:
    """The files of a summary that did not reach their recipient (a simulation sends nothing by design)."""
    return [f["file_name"] for f in summary["files"] if f["status"] not in ("sent", "simulation")]


def recorded(region: Region, plan: ReprisePlan, run_id: str, db_url: str, *, requested_at: str | None = None,
             requested_by: str | None = None) -> dict:
    """The summary of a run whose `send` failed, from the send ledger: a file of the plan is `sent` if the
    ledger says so for this run, else failed (not prepared, not uploaded, or a simulation that could not
    count)."""
    files = []
    with store.connection(db_url) as conn:
        try:
            planned = specs(conn, region, plan)
        except Exception:   # planning itself failed (e.g. no postal code table): nothing was prepared
            log.exception("reprise: the files could not be planned")
            planned = []
        for spec in planned:
            entry = None if plan.dry_run else sends.recorded(conn, spec, run_id)
            if entry and entry["status"] == "sent":
                files.append(_file(spec, entry["visits"], "sent"))
            else:
                files.append(_file(spec, entry["visits"] if entry else None,
                                   "count_failed" if plan.dry_run else "failed"))
    return summarize(region, plan, files, run_id=run_id, dry_run=plan.dry_run, requested_at=requested_at,
                     requested_by=requested_by)


def problems_of(region: Region, params: dict, today: date) -> list[str]:
    """What `validate` finds wrong with a form (empty if it is valid)."""
    try:
        validate(region, params, today)
    except RepriseError as exc:
        return exc.problems
    return []


def refusal_mail(region: Region, params: dict, problems: list[str], *, run_id: str,
                 requested_at: str | None = None, requested_by: str | None = None) -> tuple[str, str, str]:
    """(subject, text, html) of the mail telling the ARS that a reprise did not start: the form's problems,
    or, when the form is fine (the check itself failed), that operations are on it. Nothing was sent."""
    finess = str(params.get("establishment") or "").strip()
    site = next((e for e in region.establishments if e.finess == finess), None)
    form = {"etab": finess, "etab_name": site.name if site else None,
            "start": str(params.get("start_date") or ""), "end": str(params.get("end_date") or ""),
            "recipients": [r for r in RECIPIENTS if r in (params.get("recipients") or [])],
            "dry_run": bool(params.get("dry_run"))}
    return mail.render("reprise_refused", region=region, form=form, problems=problems, run_id=run_id,
                       requested_at=requested_at, requested_by=requested_by, recipient_labels=RECIPIENT_LABELS)


def failure_mail(region: Region, params: dict, plan: dict | None, *, run_id: str, db_url: str,
                 requested_at: str | None = None, requested_by: str | None = None) -> tuple[str, str, str, str]:
    """(template, subject, text, html) of the mail telling the ARS that its reprise failed: the form's problems
    when it was refused (`plan` None: `validate` failed), else which files reached their recipient and which did
    not (`send` failed after its retries, from the ledger)."""
    if plan is None:
        problems = problems_of(region, dict(params or {}), today_in(region))
        subject, text, html = refusal_mail(region, dict(params or {}), problems, run_id=run_id,
                                           requested_at=requested_at, requested_by=requested_by)
        return ("reprise_refused", subject, text, html)
    summary = recorded(region, ReprisePlan.from_dict(plan), run_id, db_url, requested_at=requested_at,
                       requested_by=requested_by)
    return ("reprise_summary", *summary_mail(region, summary))


def mail_ars(region: Region, template: str, subject: str, text: str, html: str, db_url: str, *, key: str,
             send=None) -> list[dict]:
    """Queue a mail to the region's ARS addresses in the outbox — once per `key` (run and task), however often
    the task is retried — and deliver what is pending; a mail the SMTP server did not take stays pending
    (rpu.outbox.MailNotDelivered is raised) and leaves with the next flush."""
    with store.connection(db_url) as conn:
        with conn.transaction():
            outbox.queue(conn, region, template, list(region.ars_emails), subject, text, html,
                         key=key)
        return outbox.flush(conn, region, send=send)


def summary_mail(region: Region, summary: dict) -> tuple[str, str, str]:
    """(subject, text, html) of the mail telling the ARS what the reprise sent (or would send)."""
    return mail.render("reprise_summary", region=region, s=summary, recipient_labels=RECIPIENT_LABELS,
                       status_labels=STATUS_LABELS, max_days=MAX_DAYS)


def describe(summary: dict) -> str:
    """A few log lines: what was (or would be) sent."""
    head = "SIMULATION — rien n'a été envoyé" if summary["dry_run"] else "Reprise"
    lines = [f"{head} : {summary['etab_name']} ({summary['etab']}) du {summary['start']} au {summary['end']}"]
    for f in summary["files"]:
        visits = "?" if f["visits"] is None else f["visits"]
        lines.append(f"  {f['recipient']:5} {f['file_name']}  {f['period_start']} → {f['period_end']}  "
                     f"{visits} passages  {STATUS_LABELS.get(f['status'], f['status'])}")
    return "\n".join(lines)

