"""`<code>_send_invs`, `<code>_export_ars`, `<code>_send_atih`: the scheduled sends."""
from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from rpu.config import Region
from rpu_dags.common import START, default_args


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


BUILDERS = (build_send_invs, build_export_ars, build_send_atih)
