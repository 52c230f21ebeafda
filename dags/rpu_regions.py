"""Every region's DAGs, generated from config/regions/*.yaml (one factory per DAG kind, bound per region).

Parsing reads the small YAML files only: no network, no database, no heavy import. When a task runs, Airflow
tells which DAG it needs (get_parsing_context) and only that region is built.
"""
from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, get_parsing_context, task

from rpu.config import Region, load_region, region_files

# The factories live in dags/rpu_dags (ignored as DAG files); Airflow puts the bundle on sys.path when it
# runs tasks, not always when a test builds a DagBag: make it explicit.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

START = pendulum.datetime(2026, 1, 1)


def default_args(region: Region) -> dict:
    return {"owner": region.team, "retries": region.retries,
            "retry_delay": timedelta(minutes=region.retry_delay_minutes)}


def build_intake(region: Region):
    """`<code>_intake`: establishments' files from SFTP into the regional database, every few minutes."""

    @dag(
        dag_id=f"{region.code}_intake",
        description=f"Intake of RPU files — {region.name}",
        schedule=CronTriggerTimetable(region.intake_schedule, timezone=region.timezone),
        start_date=START.in_timezone(region.timezone),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(region),
        tags=[region.code, "rpu", "intake"],
        doc_md=f"""
### Intake — {region.name} (`{region.code}`)
Lists each establishment's SFTP inbox (`{region.layout.inbox}`), skips files still being written, then for each
file (one mapped task, named after the FINESS and the file): download, local archive copy, XSD and FEDORU
checks, load into the regional database in one transaction (cancel-and-replace by day), receipt in `ack/`, move
to `archive/` or `rejected/`. A failed instance names the establishment's file; clear it to retry — a rerun
never loads a file twice. Connections: `{region.sftp_intake_conn_id}` (SFTP), `{region.db_conn_id}` (database).
""",
    )
    def intake():
        @task
        def list_new_files() -> list[dict]:
            """List the files waiting in every establishment's inbox (only those no longer growing)."""
            from rpu import intake as rpu_intake, sftp

            with sftp.open_remote(region.sftp_intake_conn_id, region.sftp_connect_attempts) as remote:
                return rpu_intake.list_new_files(region, remote)

        @task(map_index_template="{{ rpu_file }}", max_active_tis_per_dagrun=2)
        def ingest(item: dict) -> dict:
            """Download, check, load, acknowledge and archive one file."""
            from airflow.sdk import get_current_context

            from rpu import intake as rpu_intake, sftp
            from rpu.connections import db_url

            get_current_context()["rpu_file"] = f"{item['finess']} · {item['name']}"
            with sftp.open_remote(region.sftp_intake_conn_id, region.sftp_connect_attempts) as remote:
                return rpu_intake.ingest_remote_file(region, item, remote, db_url(region.db_conn_id))

        ingest.expand(item=list_new_files())

    return intake()


SENDS = {
    "invs": ("send_invs", "send_invs_schedule", "Daily OSCOUR files to InVS / Santé publique France: for each active "
             "establishment, its stored visits of the sliding window (J-{window} … J-1 by entry date)."),
    "ars": ("export_ars", "export_ars_schedule", "Daily flat export of the regional base to the ARS (CSV, gzip, with "
            "a manifest of counts per establishment and day), the sliding window, shadow establishments included."),
    "atih": ("send_atih", "send_atih_schedule", "Anonymised files to ATIH, per active establishment, cumulative since "
             "1 January to the end of the previous {atih_period} ({atih_frequency})."),
}


def build_send(region: Region, recipient: str):
    """`<code>_send_invs`, `<code>_export_ars`, `<code>_send_atih`: one mapped task per file sent."""
    kind, schedule_attr, what = SENDS[recipient]
    target = region.recipients[recipient]

    @dag(
        dag_id=f"{region.code}_{kind}",
        description=f"{kind.replace('_', ' ')} — {region.name}",
        schedule=CronTriggerTimetable(getattr(region, schedule_attr), timezone=region.timezone),
        start_date=START.in_timezone(region.timezone),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(region),
        tags=[region.code, "rpu", kind, recipient],
        doc_md=f"""
### {kind} — {region.name} (`{region.code}`)
{what.format(window=region.window_days, atih_frequency=region.atih_frequency,
             atih_period="week" if region.atih_frequency == "weekly" else "month")}

The period comes from the run's **logical date** in {region.timezone}. Each file is prepared once into the outbox
and recorded in the send ledger (`rpu ledger --region {region.code}`), then uploaded atomically to
`{target.conn_id}`:`{target.directory or '~'}`. A failed upload is retried; clearing a failed task re-sends
the very same file. To re-send a past date with the data stored now, trigger a new run for that logical date.
Shadow establishments are not sent to InVS or ATIH.
""",
    )
    def send_dag():
        @task
        def plan(logical_date=None) -> list[dict]:
            """List the files to send, from the run's logical date in the region's time zone."""
            from rpu import exports

            day = pendulum.instance(logical_date).in_timezone(region.timezone).date()
            return exports.daily_items(region, recipient, day)

        @task(map_index_template="{{ rpu_file }}", max_active_tis_per_dagrun=2)
        def send(item: dict, run_id=None) -> dict:
            """Prepare the file once (outbox + ledger), then upload it atomically."""
            from airflow.sdk import get_current_context

            from rpu import exports, sends, sftp
            from rpu.connections import db_url

            get_current_context()["rpu_file"] = f"{item['etab'] or region.code} · {item['file_name']}"
            return sends.send(region, exports.spec_of(region, item), run_id, db_url(region.db_conn_id),
                              lambda: sftp.open_remote(target.conn_id, region.sftp_connect_attempts))

        send.expand(item=plan())

    return send_dag()


def build_send_invs(region: Region):
    return build_send(region, "invs")


def build_export_ars(region: Region):
    return build_send(region, "ars")


def build_send_atih(region: Region):
    return build_send(region, "atih")


def build_reprise(region: Region):
    """`<code>_reprise`: the ARS re-sends one establishment's stored data over a period (trigger form)."""
    from airflow.sdk import Param

    choices = {e.finess: f"{e.name} ({e.finess})" + (" — en ombre : ARS seulement" if e.status == "shadow" else "")
               for e in region.establishments}
    recipient_labels = {"invs": "InVS / Santé publique France (un fichier par mois)",
                        "atih": "ATIH (fichier anonymisé, cumul depuis le 1er janvier)",
                        "ars": "ARS (export à plat de l'établissement)"}
    alerts = ", ".join(region.ars_emails) or "aucune adresse ARS dans le fichier de la région : pas de courriel"

    @dag(
        dag_id=f"{region.code}_reprise",
        description=f"Reprise (re-sending) of one establishment's stored RPU over a period — {region.name}",
        schedule=None,
        start_date=START.in_timezone(region.timezone),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(region),
        tags=[region.code, "rpu", "reprise"],
        params={
            "establishment": Param(
                type="string", enum=list(choices), values_display=choices, title="Établissement",
                description="L'établissement dont les données sont à renvoyer (nom et FINESS géographique)."),
            "start_date": Param(
                type="string", format="date", title="Date de début",
                description="Premier jour à renvoyer (date d'entrée aux urgences, incluse)."),
            "end_date": Param(
                type="string", format="date", title="Date de fin",
                description="Dernier jour à renvoyer (inclus) : au plus aujourd'hui, et au plus 366 jours "
                            "après la date de début."),
            "recipients": Param(
                ["invs"], type="array", title="Destinataires", minItems=1, uniqueItems=True,
                items={"type": "string", "enum": list(recipient_labels)},
                examples=list(recipient_labels),   # the trigger form's multi-select offers these
                values_display=recipient_labels,
                description="À qui renvoyer : InVS par défaut ; ATIH et ARS en plus si besoin."),
            "dry_run": Param(
                False, type="boolean", title="Simulation (rien n'est envoyé)",
                description="Cochée : compte seulement ce qui serait envoyé et l'écrit dans le courriel, "
                            "sans rien préparer, envoyer ni enregistrer."),
        },
        doc_md=f"""
### Reprise — {region.name} (`{region.code}`)
Pour l'ARS : renvoyer les données **déjà reçues et stockées** d'un établissement sur une période, par exemple
après une panne de transmission de plus de 7 jours (en deçà, la fenêtre glissante s'en charge seule).

Bouton **Trigger** (déclencher), puis le formulaire :
- **Établissement** : choisir dans la liste (nom et FINESS géographique). Les établissements « en ombre »
  (encore transmis par l'ancien concentrateur) ne peuvent être renvoyés qu'à l'ARS.
- **Date de début**, **Date de fin** : dates d'entrée aux urgences, incluses. La fin ne peut pas être dans le
  futur (jour jugé à l'heure de {region.timezone}) ; la période fait au plus 366 jours.
- **Destinataires** : InVS / Santé publique France par défaut (un fichier par mois de la période) ; ajouter
  l'ATIH (un fichier anonymisé, cumulé du 1er janvier de l'année de la date de fin jusqu'à celle-ci) ou l'ARS
  (un export à plat de l'établissement sur la période).
- **Simulation** : cochée, rien n'est envoyé ; le courriel dit quels fichiers partiraient et combien de
  passages ils contiendraient.

Tâches : `validate` vérifie le formulaire (une erreur est expliquée en français dans le journal de la tâche,
la reprise s'arrête là, rien n'est envoyé) ; `send` prépare chaque fichier une fois, l'inscrit au registre des
envois (`rpu ledger --region {region.code}`, type `reprise`) et le dépose sur le SFTP du destinataire ; `notify`
envoie le récapitulatif (fichiers, périodes, nombres de passages — aucune donnée patient) à : {alerts}.
Une tâche `send` en échec peut être relancée (Clear) : seuls les fichiers manquants repartent, à l'identique.
""",
    )
    def reprise():
        @task
        def validate(params=None) -> dict:
            """Check the form (establishment, period, recipients) and fix the plan of the reprise."""
            import logging

            from airflow.sdk.exceptions import AirflowFailException

            from rpu import reprise as rpu_reprise

            log = logging.getLogger("rpu.reprise")
            try:
                plan = rpu_reprise.validate(region, dict(params or {}), rpu_reprise.today_in(region))
            except rpu_reprise.RepriseError as exc:
                log.error("%s", exc)
                raise AirflowFailException(str(exc)) from exc   # a form error: retrying changes nothing
            log.info("reprise of %s (%s) from %s to %s to %s%s", plan.etab_name, plan.etab, plan.start, plan.end,
                     ", ".join(plan.recipients), " — SIMULATION" if plan.dry_run else "")
            return plan.to_dict()

        @task
        def send(plan: dict, run_id=None, dag_run=None) -> dict:
            """Re-send each file of the reprise (ledger + atomic upload), or only count it in a simulation."""
            import logging

            from rpu import reprise as rpu_reprise, sftp
            from rpu.connections import db_url

            p = rpu_reprise.ReprisePlan.from_dict(plan)
            when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
            summary = rpu_reprise.run(
                region, p, run_id, db_url(region.db_conn_id),
                lambda name: sftp.open_remote(region.recipients[name].conn_id, region.sftp_connect_attempts),
                p.dry_run,
                requested_at=pendulum.instance(when).in_timezone(region.timezone).isoformat() if when else None,
                requested_by=getattr(dag_run, "triggering_user_name", None))
            logging.getLogger("rpu.reprise").info("%s", rpu_reprise.describe(summary))
            failed = rpu_reprise.failed_files(summary)
            if failed:
                raise RuntimeError(f"{len(failed)} fichier(s) non envoyé(s) : {', '.join(failed)} — relancer la "
                                   "tâche renvoie ces mêmes fichiers")
            return summary

        @task
        def notify(summary: dict) -> None:
            """Mail the summary of the reprise to the region's ARS address(es)."""
            import logging

            from airflow.sdk.exceptions import AirflowSkipException

            from rpu import mail, reprise as rpu_reprise

            if not region.ars_emails:
                logging.getLogger("rpu.reprise").info(
                    "no ARS address in the region file (alerts.ars): summary not mailed")
                raise AirflowSkipException("no ARS address (alerts.ars) in the region file")
            subject, text, html = rpu_reprise.summary_mail(region, summary)
            mail.send(region.smtp_conn_id, list(region.ars_emails), subject, text, html)

        notify(send(validate()))

    return reprise()


BUILDERS = (build_intake, build_send_invs, build_export_ars, build_send_atih, build_reprise)


def _factories() -> tuple:
    """Every `BUILDERS` tuple of the modules of dags/rpu_dags, in module name order."""
    import importlib
    import pkgutil

    import rpu_dags

    found = []
    for info in sorted(pkgutil.iter_modules(rpu_dags.__path__), key=lambda m: m.name):
        found += getattr(importlib.import_module(f"rpu_dags.{info.name}"), "BUILDERS", ())
    return tuple(found)


BUILDERS = BUILDERS + _factories()


def _wanted(code: str) -> bool:
    dag_id = get_parsing_context().dag_id
    return dag_id is None or dag_id.startswith(f"{code}_")


for _path in region_files():
    if not _wanted(_path.stem):
        continue
    _region = load_region(_path)
    for _build in BUILDERS:
        globals()[f"{_region.code}__{_build.__name__}"] = _build(_region)
