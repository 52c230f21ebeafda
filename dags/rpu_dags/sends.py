"""`<code>_send_invs`, `<code>_export_ars`, `<code>_send_atih`: the scheduled sends."""
from __future__ import annotations

import re
from datetime import timedelta

import pendulum
from airflow.sdk import task

from rpu import dagset
from rpu.config import Region
from rpu_dags.common import failure_doc, region_dag


WHAT = {
    "invs": ("Daily OSCOUR files to InVS / Santé publique France: for each "
             "FINESS_ordre of an active establishment with data, its stored visits of the sliding window (J-{window} "
             "… J-1 by entry date), declaring only the days it provides."),
    "ars": ("Daily flat export of the regional base to the ARS (CSV, gzip, with "
            "a manifest of counts per FINESS_ordre and day), the sliding window, shadow establishments included."),
    "atih": ("Anonymised files to ATIH, per FINESS_ordre of an active "
             "establishment with data, cumulative since 1 January to the end of the previous {atih_period} "
             "({atih_frequency}); in January and at the first run after it, also the closing file of the previous "
             "year (1 January–31 December)."),
}


def invs_deadline(region: Region):
    """The deadline alert of the daily InVS send: not succeeded by `schedules.send_invs_deadline` (08:00 by
    default) → operations are mailed (rpu.ops.deadline_missed). Counted from when the run was queued, so a run
    triggered by hand for a past date gets the same delay rather than an alarm at once. None when the schedule
    is not a plain daily "M H * * *" or the deadline is `none`."""
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    m = re.fullmatch(r"(\d{1,2}) (\d{1,2}) \* \* \*", region.sends.schedule("invs").strip())
    if not region.sends.invs_deadline or not m:
        return None
    hour, minute = map(int, region.sends.invs_deadline.split(":"))
    minutes = (hour * 60 + minute - int(m.group(2)) * 60 - int(m.group(1))) % (24 * 60)
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=minutes),
                         callback=SyncCallback("rpu.ops.deadline_missed",
                                               kwargs={"region": region.code, "deadline": region.sends.invs_deadline}),
                         name=f"{region.code}_send_invs not succeeded by {region.sends.invs_deadline}")


def build_send(region: Region, recipient: str):
    """`<code>_send_invs`, `<code>_export_ars`, `<code>_send_atih`: one mapped task per file sent."""
    kind = dagset.SENDS[recipient].name
    what = WHAT[recipient]
    target = region.sends.recipients[recipient]
    deadline = invs_deadline(region) if recipient == "invs" else None
    pools = dagset.task_pools(region.code, dagset.SENDS[recipient])

    @region_dag(
        region, dagset.SENDS[recipient],
        description=f"{kind.replace('_', ' ')} — {region.name}",
        deadline=deadline,
        doc_md=f"""
### {kind} — {region.name} (`{region.code}`)
{what.format(window=region.sends.window_days, atih_frequency=region.atih.frequency,
             atih_period="week" if region.atih.frequency == "weekly" else "month")}

The period comes from the run's **logical date** in {region.timezone}. Each file is prepared once into the outbox
and recorded in the send ledger (`rpu ledger --region {region.code}`), then uploaded atomically to
`{target.conn_id}`:`{target.directory or '~'}`. A failed upload is retried; clearing a failed task re-sends
the very same file. To re-send a past date with the data stored now, trigger a new run for that logical date:
its files' EXTRACT is the time they are built, so they supersede what was sent before.
Shadow establishments, and establishments with no accepted file yet, are not sent to InVS or ATIH; days held
back by the quality gate are never declared (the period is split or ends before them).
{f"The run must succeed by {region.sends.invs_deadline} ({region.timezone}), else operations are mailed." if deadline else ""}

{failure_doc(region, "send")}
""",
    )
    def send_dag():
        @task(pool=pools["plan"])
        def plan(logical_date=None) -> list[dict]:
            """List the files to send (per FINESS_ordre with data), from the run's logical date in the region's
            time zone."""
            from rpu import exports, store
            from rpu.connections import db_url

            day = pendulum.instance(logical_date).in_timezone(region.timezone).date()
            with store.connection(db_url(region.db_conn_id)) as conn:
                return exports.daily_items(conn, region, recipient, day)

        @task(map_index_template="{{ rpu_file }}", max_active_tis_per_dagrun=2, pool=pools["send"])
        def send(item: dict, run_id=None) -> dict:
            """Prepare the file once (outbox + ledger), then upload it atomically."""
            from airflow.sdk import get_current_context

            from rpu import exports, sends, sftp
            from rpu.connections import db_url

            who = f"{item['etab']}_{item['ordre']}" if item["etab"] else region.code
            get_current_context()["rpu_file"] = f"{who} · {item['file_name']}"
            return sends.send(region, exports.spec_of(item), run_id, db_url(region.db_conn_id),
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
