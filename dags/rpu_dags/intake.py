"""`<code>_intake`: establishments' files from SFTP into the regional database."""
from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag, task

from rpu.config import Region
from rpu_dags.common import dag_args, failure_doc


def build_intake(region: Region):
    """`<code>_intake`: establishments' files from SFTP into the regional database, every few minutes."""

    @dag(
        dag_id=f"{region.code}_intake",
        description=f"Intake of RPU files — {region.name}",
        schedule=CronTriggerTimetable(region.intake_schedule, timezone=region.timezone),
        **dag_args(region, "intake"),
        tags=[region.code, "rpu", "intake"],
        doc_md=f"""
### Intake — {region.name} (`{region.code}`)
Lists each establishment's SFTP inbox (`{region.layout.inbox}`), skips files still being written, then for each
file (one mapped task, named after the FINESS and the file): download, local archive copy, XSD and FEDORU
checks, load into the regional database in one transaction (cancel-and-replace by day), quality gate (Great
Expectations suites: results stored; a blocking failure holds the batch back until `rpu release`), receipt in
`ack/`, move to `archive/` or `rejected/`. A failed instance names the establishment's file; clear it to retry — a rerun
never loads a file twice. Connections: `{region.sftp_intake_conn_id}` (SFTP), `{region.db_conn_id}` (database).

{failure_doc(region, "intake")}
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


BUILDERS = (build_intake,)
