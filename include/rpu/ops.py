"""Telling the region's operations (`alerts.ops`) that something went wrong: a DAG run that failed after its
retries, a send that missed its deadline. French mail `dag_failed`, queued in the outbox (rpu.outbox) so that
it is sent when the SMTP server is back; sent directly when the database itself is what failed.

The Airflow side is thin: `rpu_dags.notify.RegionFailureNotifier` (every DAG's on_failure_callback) and the
deadline alert of the InVS send call `tell_failure`; `deadline_missed` is the deadline's callback (an import
path run by Airflow's executor). No patient data: DAG and task ids, dates, reasons; an error's message only
when it is one of this package's own (they never quote a file's content), else its type alone.
"""
from __future__ import annotations

import logging
from datetime import datetime

from rpu import mail, outbox, store
from rpu.config import Region, get_region
from rpu.connections import db_url as conn_url

log = logging.getLogger(__name__)

REASONS = {
    "task_failure": "une tâche a échoué après ses nouvelles tentatives",
    "timed_out": "durée maximale de l'exécution dépassée (dagrun_timeout)",
    "all_tasks_deadlocked": "tâches bloquées (dépendances en échec)",
    "deadline": "heure limite dépassée sans succès",
}
WHAT_NOW = {
    "intake": "Les fichiers restent dans les boîtes SFTP des établissements : rien n'est perdu. Corrigez la cause "
              "(serveur SFTP, base de données), puis relancez la tâche en échec (Clear) ou attendez l'exécution "
              "suivante.",
    "send": "Le fichier préparé est gardé dans le registre des envois (rpu ledger) : relancer la tâche en échec "
            "(Clear) dépose ce même fichier une fois le destinataire ou la base rétablis.",
    "watch": "Les alertes non envoyées restent en attente et partent à la relance de la tâche ou à la veille du "
             "lendemain.",
    "reprise": "Le récapitulatif de la reprise reste en attente et part dès que le serveur de courriel répond ; "
               "relancer la tâche send ne renvoie que les fichiers manquants.",
}


def _kind(dag_id: str, region: Region) -> str:
    suffix = dag_id.removeprefix(f"{region.code}_")
    return {"send_invs": "send", "export_ars": "send", "send_atih": "send"}.get(suffix, suffix)


def safe_error(exc: BaseException | None) -> str | None:
    """What an error may say in a mail: its message when it is this package's own, else its type only."""
    if exc is None:
        return None
    if type(exc).__module__.startswith("rpu."):
        return f"{type(exc).__name__}: {exc}"[:500]
    return f"{type(exc).__name__} (détail dans le journal de la tâche)"


def failure_mail(region: Region, *, dag_id: str, run_id: str | None, logical_date: datetime | str | None,
                 reason: str, task: str | None = None, map_index: int | None = None,
                 rendered_map_index: str | None = None, try_number: int | None = None, error: str | None = None,
                 log_url: str | None = None, deadline: str | None = None) -> tuple[str, str, str]:
    """(subject, text, html) of the mail telling operations that a run failed or missed its deadline."""
    if isinstance(logical_date, datetime):
        logical_date = logical_date.astimezone(region.tz)
    elif isinstance(logical_date, str) and logical_date:
        logical_date = datetime.fromisoformat(logical_date.replace("Z", "+00:00")).astimezone(region.tz)
    return mail.render("dag_failed", region=region, dag_id=dag_id, run_id=run_id or "?", logical_date=logical_date,
                       task=task, map_index=map_index, rendered_map_index=rendered_map_index, try_number=try_number,
                       reason_label=REASONS.get(reason, reason), error=error, log_url=log_url, deadline=deadline,
                       what_now=WHAT_NOW.get(_kind(dag_id, region), ""))


def tell(region: Region, template: str, subject: str, text: str, html: str, *, db_url: str | None = None,
         send=None) -> None:
    """Mail the region's operations: through the outbox (kept until delivered) when the database answers,
    else directly. No operations address: logged only."""
    if not region.ops_emails:
        log.warning("region %s: no operations address (alerts.ops): not mailed: %s", region.code, subject)
        return
    try:
        if db_url is None:
            db_url = conn_url(region.db_conn_id)
        with store.connection(db_url) as conn:
            with conn.transaction():
                outbox.queue(conn, region, template, list(region.ops_emails), subject, text, html)
            outbox.flush(conn, region, send=send)
        return
    except outbox.MailNotDelivered:
        log.warning("region %s: %r kept in the outbox, sent when the mail server is back", region.code, subject)
        return
    except Exception:   # the database is down (perhaps why the run failed): straight to SMTP
        log.warning("region %s: outbox unavailable, mailing operations directly", region.code, exc_info=True)
    (send or mail.send)(region.smtp_conn_id, list(region.ops_emails), subject, text, html)


def tell_failure(region: Region, *, db_url: str | None = None, send=None, **details) -> None:
    """Mail operations that a run failed (details: see failure_mail)."""
    subject, text, html = failure_mail(region, **details)
    tell(region, "dag_failed", subject, text, html, db_url=db_url, send=send)


def deadline_missed(context: dict | None = None, *, region: str, deadline: str) -> None:
    """Callback of a DAG's deadline alert (Airflow imports it by its path): the run has not succeeded by the
    deadline (e.g. the daily InVS send by 08:00): operations are told."""
    run = (context or {}).get("dag_run") or {}
    tell_failure(get_region(region), dag_id=run.get("dag_id", "?"), run_id=run.get("dag_run_id") or run.get("run_id"),
                 logical_date=run.get("logical_date"), reason="deadline", deadline=deadline)
