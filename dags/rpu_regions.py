"""Every region's DAGs, generated from config/regions/*.yaml (one factory per DAG kind, bound per region).

Parsing reads the small YAML files only: no network, no database, no heavy import. When a task runs, Airflow
tells which DAG it needs (get_parsing_context) and only that region is built.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, get_parsing_context, task

from rpu.config import Region, load_region, region_files

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

            with sftp.open_remote(region.sftp_intake_conn_id) as remote:
                return rpu_intake.list_new_files(region, remote)

        @task(map_index_template="{{ rpu_file }}", max_active_tis_per_dagrun=2)
        def ingest(item: dict) -> dict:
            """Download, check, load, acknowledge and archive one file."""
            from airflow.sdk import get_current_context

            from rpu import intake as rpu_intake, sftp
            from rpu.connections import db_url

            get_current_context()["rpu_file"] = f"{item['finess']} · {item['name']}"
            with sftp.open_remote(region.sftp_intake_conn_id) as remote:
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
                              lambda: sftp.open_remote(target.conn_id))

        send.expand(item=plan())

    return send_dag()


def build_send_invs(region: Region):
    return build_send(region, "invs")


def build_export_ars(region: Region):
    return build_send(region, "ars")


def build_send_atih(region: Region):
    return build_send(region, "atih")


BUILDERS = (build_intake, build_send_invs, build_export_ars, build_send_atih)


def _wanted(code: str) -> bool:
    dag_id = get_parsing_context().dag_id
    return dag_id is None or dag_id.startswith(f"{code}_")


for _path in region_files():
    if not _wanted(_path.stem):
        continue
    _region = load_region(_path)
    for _build in BUILDERS:
        globals()[f"{_region.code}__{_build.__name__}"] = _build(_region)
