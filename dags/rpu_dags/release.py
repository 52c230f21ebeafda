"""`<code>_release`: ATIH operations release a batch the quality gate quarantined, from a trigger form."""
from __future__ import annotations

from airflow.sdk import task

from rpu import dagset
from rpu.config import Region
from rpu_dags.common import failure_doc, region_dag

# The trigger form (Airflow Params): the file by its id (on its receipt), or by FINESS and file name; a reason.
FORM = {
    "file_id": dict(default=None, type=["null", "integer"], minimum=1, title="Numéro du fichier",
                    description="Le numéro du fichier reçu (file_id de son accusé de réception). Sinon : FINESS et "
                                "nom du fichier ci-dessous."),
    "finess": dict(default=None, type=["null", "string"], pattern="^[0-9AB]{9}$|^$", title="FINESS",
                   description="FINESS géographique de l'établissement (avec le nom du fichier, à la place du numéro)."),
    "file_name": dict(default=None, type=["null", "string"], title="Nom du fichier",
                      description="Nom du fichier déposé (avec le FINESS, à la place du numéro)."),
    "reason": dict(type="string", minLength=3, title="Motif",
                   description="Pourquoi le lot est libéré (obligatoire ; gardé avec l'exécution et son journal)."),
}


def target(params: dict) -> tuple[int | None, tuple[str, str] | None]:
    """(file id, None) or (None, (FINESS, file name)) from the form; ValueError when it names no file or two ways."""
    file_id = params.get("file_id")
    finess, name = (str(params.get(k) or "").strip() for k in ("finess", "file_name"))
    if file_id and (finess or name):
        raise ValueError("give either the file id or the FINESS and file name, not both")
    if file_id:
        return int(file_id), None
    if finess and name:
        return None, (finess, name)
    raise ValueError("no file named: give its file id, or its FINESS and file name")


def build_release(region: Region):
    """`<code>_release`: release one quarantined batch (rpu.quality.release, as `rpu release`), by ATIH ops."""
    from airflow.sdk import Param

    @region_dag(
        region, dagset.RELEASE,
        description=f"Release of a batch held back by the quality gate — {region.name}",
        params={name: Param(**spec) for name, spec in FORM.items()},
        doc_md=f"""
### Libération d'un lot en quarantaine — {region.name} (`{region.code}`)
Pour l'exploitation ATIH (rôle `{dagset.ATIH_ROLE}` ; l'ARS ne peut pas la déclencher) : un lot dont une attente
**bloquante** du contrôle qualité a échoué est gardé hors des envois ; cette DAG le libère : ses passages partent
avec les prochains envois InVS, ATIH et ARS. Même fonction que `rpu release` (rpu.quality.release).

Bouton **Trigger**, puis le formulaire : le **numéro du fichier** (son accusé de réception le donne), ou son
**FINESS** et son **nom** ; le **motif** (obligatoire). Qui l'a déclenchée est dans le journal d'audit d'Airflow
et est enregistré comme auteur de la libération ; le motif est dans la configuration de l'exécution et le
journal de la tâche. Un fichier qui n'est pas en quarantaine fait échouer l'exécution avec ce message, sans
nouvelle tentative ; libérer un lot déjà libéré ne change rien.

{failure_doc(region, dagset.RELEASE.timeouts)}
""",
    )
    def release_dag():
        @task
        def release(params=None, dag_run=None, run_id=None) -> dict:
            """Release the file named by the form (rpu.quality.release.release), as the triggering user."""
            import logging

            from airflow.sdk.exceptions import AirflowFailException

            from rpu import store
            from rpu.connections import db_url
            from rpu.quality.release import file_id_of, release as release_file

            log = logging.getLogger("rpu.quality")
            params = dict(params or {})
            by = getattr(dag_run, "triggering_user_name", None) or f"Airflow ({run_id})"
            try:
                file_id, named = target(params)
                with store.connection(db_url(region.db_conn_id)) as conn:
                    if named:
                        file_id = file_id_of(conn, *named)
                    r = release_file(conn, file_id, by, params.get("reason"))
            except (ValueError, LookupError) as exc:     # NotQuarantined too: a form's fault, retrying changes nothing
                log.error("%s", exc)
                raise AirflowFailException(str(exc)) from exc
            log.info("file #%s %s (%s): %s by %s; reason: %s", r["file_id"], r["file"], r["etab"],
                     "already released" if r["already"] else "released", r["released_by"], r["reason"])
            return {k: (str(v) if k == "released_at" else v) for k, v in r.items()}

        release()

    return release_dag()


BUILDERS = (build_release,)
