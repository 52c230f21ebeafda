"""Airflow DAG `syrius_reception`: the ATIH side (Syrius platform), one for the whole country.

Every few minutes: each region's drop directory on the Syrius SFTP server (where `<code>_send_atih` uploads) is
listed; each stable file is checked (anonymised ATIH layout, FINESS of the region, period from 1 January) and
recorded in the national database, then moved to archive/ or rejected/ with a receipt in ack/ (rpu.national.
reception); then each region's ATIH sends are reconciled with what was received, and what does not conform is
mailed once (rpu.national.reconciliation). Settings: config/national.yaml (rpu.national.settings).
"""
from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag, task

from rpu.national import settings
from rpu_dags.common import dag_args, failure_doc

NATIONAL = settings.load()
ME = NATIONAL.as_region()   # the shared helpers' "region": owner, retries, timeouts, failure mails of ATIH's side


def _regions():
    """The valid region files (an invalid one is skipped and logged: it must not stop the others)."""
    import logging

    from rpu.config import ConfigError, load_region, region_files

    found = []
    for path in region_files():
        try:
            found.append(load_region(path))
        except (ConfigError, OSError) as exc:
            logging.getLogger(__name__).error("skipping %s: %s", path.name, exc)
    return found


@dag(
    dag_id="syrius_reception",
    description="ATIH (Syrius): reception of the regions' cumulative files, national page, reconciliation",
    schedule=CronTriggerTimetable(NATIONAL.schedule, timezone=NATIONAL.timezone),
    **dag_args(ME, "intake"),
    tags=["atih", "rpu", "syrius", "national", "reception"],
    doc_md=f"""
### Syrius reception — {ME.name} (national)
Lists the drop directory of every region (`{NATIONAL.drop_dir}` on `{NATIONAL.sftp_conn_id}`, the directory each
`<code>_send_atih` uploads to); a file whose size and mtime stay still is downloaded (checked on the opened
handle: never through a symlink; at most {NATIONAL.max_file_bytes // (1024 * 1024)} MB) and read by the intake's
streaming parser. Accepted: an anonymised cumulative ATIH file (CODE_GEO and AGE, no CP, COMMUNE or NAISSANCE)
of an establishment of that region, period from 1 January, with an EXTRACT — recorded in the national database
(`{NATIONAL.db_conn_id}`) in one transaction, superseding the older files of its FINESS_ordre and year, moved
to `archive/`. Refused: moved to `rejected/`; a file carrying CP, COMMUNE or NAISSANCE is deleted, never stored.
A receipt goes to `ack/`; a refusal is mailed to the region. Then `reconcile` compares each region's send ledger
(`rpu_<code>_db`) with what was received: a send not conforming (écart, refusé, non reçu after
{NATIONAL.missing_after_hours:g} h) is mailed once to ATIH operations and the region's ARS.

{failure_doc(ME, "intake")}
""",
)
def syrius_reception():
    @task
    def list_new_files() -> list[dict]:
        """List the stable files of every region's drop directory (and the entries to refuse)."""
        from rpu import files, sftp
        from rpu.national import reception

        files.clean_work(reception.work_root())
        with sftp.open_remote(NATIONAL.sftp_conn_id, NATIONAL.sftp_connect_attempts) as remote:
            return reception.list_new_files(NATIONAL, _regions(), remote)

    @task(map_index_template="{{ rpu_file }}", max_active_tis_per_dagrun=2)
    def receive(item: dict) -> list[dict]:
        """Download, check, record, acknowledge and archive one file."""
        from airflow.sdk import get_current_context

        from rpu import sftp
        from rpu.connections import db_url
        from rpu.national import reception

        get_current_context()["rpu_file"] = f"{item['region']} · {item['name']}"
        regions = {r.code: r for r in _regions()}
        with sftp.open_remote(NATIONAL.sftp_conn_id, NATIONAL.sftp_connect_attempts) as remote:
            return reception.receive_items(NATIONAL, regions, [item], remote, db_url(NATIONAL.db_conn_id),
                                           reception.work_root())

    @task(trigger_rule="all_done")
    def reconcile(logical_date=None) -> dict:
        """Reconcile each region's ATIH sends with what was received; mail what does not conform (once)."""
        import logging

        import pendulum

        from rpu import faults, store
        from rpu.connections import db_url
        from rpu.national import reconciliation

        today = pendulum.instance(logical_date).in_timezone(NATIONAL.timezone).date()
        years = [today.year - 1, today.year] if today.month <= 2 else [today.year]   # the closing files too
        out, failed = {}, []
        with store.connection(db_url(NATIONAL.db_conn_id)) as nc:
            for region in _regions():
                try:
                    with store.connection(db_url(region.db_conn_id)) as rc:
                        for year in years:
                            result = reconciliation.reconcile(rc, nc, NATIONAL, region, year)
                            told = reconciliation.tell(nc, NATIONAL, region, result)
                            out[f"{region.code}/{year}"] = {
                                "files": len(result["rows"]), "told": len(told),
                                "statuses": {s: sum(1 for r in result["rows"] if r["status"] == s)
                                             for s in reconciliation.LABELS}}
                except Exception as exc:   # noqa: BLE001 - a region's database: ours, retried after the others
                    failed.append(region.code)
                    db = faults.db_error(exc)
                    what = faults.describe_db_error(db) if db is not None else faults.code_location(exc)
                    logging.getLogger("rpu.national").error("region %s: not reconciled: %s", region.code, what)
        if failed:
            raise faults.DatabaseFault(f"reconciliation not done for {', '.join(failed)} (retried)")
        return out

    reconcile() << receive.expand(item=list_new_files())


syrius_reception()
