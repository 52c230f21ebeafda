"""`<code>_intake`: establishments' files from SFTP into the regional database."""
from __future__ import annotations

from airflow.sdk import task

from rpu import dagset
from rpu.config import Region
from rpu_dags.common import failure_doc, region_dag


def build_intake(region: Region):
    """`<code>_intake`: establishments' files from SFTP into the regional database, every few minutes."""

    @region_dag(
        region, "intake",
        description=f"Intake of RPU files — {region.name}",
        doc_md=f"""
### Intake — {region.name} (`{region.code}`)
Lists each establishment's SFTP inbox (`{region.intake.layout.inbox}`), skips files still being written, then ingests
the files in chunks of {region.intake.chunk_files} (one mapped task per chunk, named after the FINESS and file of each;
larger chunks when a backlog would pass Airflow's `max_map_length`). Each file on its own: download (checked on
the opened handle: never through a symlink), local archive copy, XSD and FEDORU checks, load into the regional
database in one transaction (cancel-and-replace by day), receipt in `ack/`, move to `archive/` or `rejected/`.
Then `gate`, once per run (even when a chunk failed): the quality gate (Great Expectations suites, imported once)
over every batch waiting for it, each file judged on its own — results stored, receipt written again with the
verdict; a batch is exported only once its gate ran, and a blocking failure holds it back until `rpu release`. An entry that cannot be read as a file
(odd or over-long name, symlink, directory, over `max_file_mb`) is refused alone, with its receipt. A fault of
ours (database, SFTP) fails the chunk after its other files and it is retried — a rerun never loads a file
twice; a file's content never fails a task. `tidy` removes the leftovers of killed tasks from the work area
and applies the archive's retention. Connections: `{region.sftp_intake_conn_id}` (SFTP), `{region.db_conn_id}`
(database).

{failure_doc(region, "intake")}
""",
    )
    def intake():
        @task
        def tidy() -> dict:
            """Remove work files of killed tasks and archived files past the region's retention."""
            from rpu import intake as rpu_intake

            return rpu_intake.tidy(region)

        @task
        def list_new_files() -> list[dict]:
            """List every inbox entry waiting (files no longer growing, entries to refuse), in chunks."""
            from airflow.sdk.configuration import conf

            from rpu import intake as rpu_intake, sftp

            with sftp.open_remote(region.sftp_intake_conn_id, region.sftp_connect_attempts) as remote:
                items = rpu_intake.list_new_files(region, remote)
            return rpu_intake.chunks(region, items, conf.getint("core", "max_map_length"))

        @task(map_index_template="{{ rpu_files }}", max_active_tis_per_dagrun=2, 
               pool=dagset.task_pools(region.code, dagset.INTAKE)["ingest"])
        def ingest(chunk: dict) -> list[dict]:
            """Download, check, load, acknowledge and archive each file of one chunk."""
            from airflow.sdk import get_current_context

            from rpu import intake as rpu_intake, sftp
            from rpu.connections import db_url

            get_current_context()["rpu_files"] = chunk["label"]
            with sftp.open_remote(region.sftp_intake_conn_id, region.sftp_connect_attempts) as remote:
                return rpu_intake.ingest_items(region, chunk["files"], remote, db_url(region.db_conn_id))

        @task(trigger_rule="all_done", pool=dagset.task_pools(region.code, dagset.INTAKE)["gate"])
        def gate() -> list[dict]:
            """The run's one quality gate: every batch waiting for it (this run's loads, an earlier run's left
            pending), each judged on its own; receipts written again with the verdict."""
            from rpu import intake as rpu_intake, sftp
            from rpu.connections import db_url

            # SFTP opened first: when it is down the task fails (and is retried) before judging anything
            with sftp.open_remote(region.sftp_intake_conn_id, region.sftp_connect_attempts) as remote:
                return rpu_intake.gate_run(region, db_url(region.db_conn_id), remote)

        tidy()
        ingest.expand(chunk=list_new_files()) >> gate()

    return intake()


BUILDERS = (build_intake,)
