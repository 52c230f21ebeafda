"""`<code>_reprise`: the ARS re-sends one establishment's data over a period, from a trigger form."""
from __future__ import annotations

import pendulum
from airflow.sdk import task

from rpu import dagset
from rpu.config import Region
from rpu_dags.common import failure_doc, region_dag


def build_reprise(region: Region):
    """`<code>_reprise`: the ARS re-sends one establishment's stored data over a period (trigger form)."""
    from airflow.sdk import Param

    from rpu import reprise as rpu_reprise   # plain Python, no heavy import: the form's fields and words

    alerts = ", ".join(region.ars_emails) or "aucune adresse ARS dans le fichier de la région : pas de courriel"

    @region_dag(
        region, "reprise",
        description=f"Reprise (re-sending) of one establishment's stored RPU over a period — {region.name}",
        # the trigger form: fields, French words and limits from rpu.reprise (which checks the same form)
        params={name: Param(**spec) for name, spec in rpu_reprise.form(region).items()},
        doc_md=f"""
### Reprise — {region.name} (`{region.code}`)
Pour l'ARS : renvoyer les données **déjà reçues et stockées** d'un établissement sur une période, par exemple
après une panne de transmission de plus de 7 jours (en deçà, la fenêtre glissante s'en charge seule).

Bouton **Trigger** (déclencher), puis le formulaire :
- **Établissement** : choisir dans la liste (nom et FINESS géographique). Les établissements « en ombre »
  (encore transmis par l'ancien concentrateur) ne peuvent être renvoyés qu'à l'ARS.
- **Date de début**, **Date de fin** : dates d'entrée aux urgences, incluses. La fin ne peut pas être dans le
  futur (jour jugé à l'heure de {region.timezone}) ; la période fait au plus {rpu_reprise.MAX_DAYS} jours.
- **Destinataires** : InVS / Santé publique France par défaut (un fichier par mois de la période) ; ajouter
  l'ATIH (un fichier anonymisé, cumulé du 1er janvier de l'année de la date de fin jusqu'à celle-ci) ou l'ARS
  (un export à plat de l'établissement sur la période).
- **Simulation** : cochée, rien n'est envoyé ; le courriel dit quels fichiers partiraient et combien de
  passages ils contiendraient.

Tâches : `validate` vérifie le formulaire (une erreur est expliquée en français dans le journal de la tâche,
la reprise s'arrête là, rien n'est envoyé) ; `send` prépare chaque fichier une fois, l'inscrit au registre des
envois (`rpu ledger --region {region.code}`, type `reprise`) et le dépose sur le SFTP du destinataire ; `notify`
envoie le récapitulatif (fichiers, périodes, nombres de passages — aucune donnée patient) à : {alerts}.
En cas d'échec, `notify_failure` écrit à ces mêmes adresses : formulaire refusé (ce qu'il faut corriger), ou
fichiers envoyés et fichiers en échec une fois les nouvelles tentatives de `send` épuisées.
Une tâche `send` en échec peut être relancée (Clear) : seuls les fichiers manquants repartent, à l'identique,
et `notify` envoie alors le récapitulatif complet. Si le serveur de courriel ne répond pas, le récapitulatif est
gardé en attente et part dès son retour (relance de `notify`, ou veille du lendemain).

{failure_doc(region, "reprise")}
""",
    )
    def reprise():
        @task
        def validate(params=None) -> dict:
            """Check the form (establishment, period, recipients) and fix the plan of the reprise."""
            import logging

            from airflow.sdk.exceptions import AirflowFailException

            log = logging.getLogger("rpu.reprise")
            try:
                plan = rpu_reprise.validate(region, dict(params or {}), rpu_reprise.today_in(region))
            except rpu_reprise.RepriseError as exc:
                log.error("%s", exc)
                raise AirflowFailException(str(exc)) from exc   # a form error: retrying changes nothing
            log.info("reprise of %s (%s) from %s to %s to %s%s", plan.etab_name, plan.etab, plan.start, plan.end,
                     ", ".join(plan.recipients), " — SIMULATION" if plan.dry_run else "")
            return plan.to_dict()

        @task(pool=dagset.task_pools(region.code, dagset.REPRISE)["send"])
        def send(plan: dict, run_id=None, dag_run=None) -> dict:
            """Re-send each file of the reprise (ledger + atomic upload), or only count it in a simulation."""
            import logging

            from rpu import sftp
            from rpu.connections import db_url

            p = rpu_reprise.ReprisePlan.from_dict(plan)
            summary = rpu_reprise.run(
                region, p, run_id, db_url(region.db_conn_id),
                lambda name: sftp.open_remote(region.sends.recipients[name].conn_id, region.sftp_connect_attempts),
                p.dry_run, **_requested(dag_run))
            logging.getLogger("rpu.reprise").info("%s", rpu_reprise.describe(summary))
            failed = rpu_reprise.failed_files(summary)
            if failed:
                raise RuntimeError(f"{len(failed)} fichier(s) non envoyé(s) : {', '.join(failed)} — relancer la "
                                   "tâche renvoie ces mêmes fichiers")
            return summary

        @task
        def notify(summary: dict, run_id=None) -> None:
            """Mail the summary of the reprise to the region's ARS address(es), kept pending until delivered."""
            from rpu.connections import db_url

            _skip_without_ars_address()
            subject, text, html = rpu_reprise.summary_mail(region, summary)
            rpu_reprise.mail_ars(region, "reprise_summary", subject, text, html, db_url(region.db_conn_id),
                                 key=f"reprise:{run_id}:notify")

        @task(trigger_rule="one_failed")
        def notify_failure(params=None, run_id=None, dag_run=None, ti=None) -> None:
            """Tell the ARS that its reprise failed: the form's problems (`validate` failed), or which files
            reached their recipient and which did not (`send` failed after its retries, from the ledger)."""
            from rpu.connections import db_url

            _skip_without_ars_address()
            template, subject, text, html = rpu_reprise.failure_mail(
                region, dict(params or {}), ti.xcom_pull(task_ids="validate"), run_id=run_id,
                db_url=db_url(region.db_conn_id), **_requested(dag_run))
            # its own key: once `send` is cleared and succeeds, `notify` still sends the complete summary
            rpu_reprise.mail_ars(region, template, subject, text, html, db_url(region.db_conn_id),
                                 key=f"reprise:{run_id}:notify_failure")

        def _skip_without_ars_address() -> None:
            import logging

            from airflow.sdk.exceptions import AirflowSkipException

            if not region.ars_emails:
                logging.getLogger("rpu.reprise").info("no ARS address in the region file (alerts.ars): not mailed")
                raise AirflowSkipException("no ARS address (alerts.ars) in the region file")

        def _requested(dag_run) -> dict:
            """When (the run's logical date, in the region's time zone) and by whom the reprise was asked."""
            when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
            return {"requested_at": pendulum.instance(when).in_timezone(region.timezone).isoformat() if when else None,
                    "requested_by": getattr(dag_run, "triggering_user_name", None)}

        plan = validate()
        summary = send(plan)
        notify(summary)
        [plan, summary] >> notify_failure()

    return reprise()


BUILDERS = (build_reprise,)
