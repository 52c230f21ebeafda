"""`<code>_watch`: every day at the region's cut-off, what went wrong since the previous one — mailed once."""
from __future__ import annotations

import pendulum
from airflow.sdk import task

from rpu.config import Region
from rpu_dags.common import failure_doc, region_dag


def build_watch(region: Region):
    """`<code>_watch`: missing transmissions, rejected files, abnormal days; alert history; one ARS mail."""
    ars = ", ".join(region.ars_emails) or "aucune adresse ARS dans le fichier de la région (alerts.ars) : pas de " \
                                           "courriel à l'ARS"
    contacts = sum(1 for e in region.establishments if e.contact)

    @region_dag(
        region, "watch",
        description=f"Daily watch at the cut-off {region.watch.cutoff}: transmissions, rejections, abnormal days "
                    f"— {region.name}",
        doc_md=f"""
### Veille quotidienne — {region.name} (`{region.code}`)
Every day at **{region.watch.cutoff}** ({region.timezone}, `watch.cutoff` of the region file) the watch looks at
the files received since the previous cut-off and at the stored visits:

- **missing transmission**: active establishments with no accepted file since the previous cut-off, with the
  consecutive days without transmission and the date of their last accepted file; **reprise needed** from 8
  days (the sliding window no longer covers the gap); **back to normal** after a gap, with the entry days to ask
  in a reprise (`{region.code}_reprise`); **declared, not yet in production** (no accepted file ever), with
  how long;
- **rejected files** since the previous cut-off, with their reasons; **late files** (received after the
  cut-off of the day they were due);
- **abnormal days**: a day of the last 7 whose visit count is below μ − 3σ of the same weekday over the previous
  {region.watch.history_weeks} weeks (days below μ − 2σ dropped first); a **sudden drop of the DP coding rate**;
- **shadow establishments ready to switch** (7 consecutive days of accepted files).

Findings are kept in the `alert` table of the regional database (view `open_alert`): an alert is mailed when
new, once more when a gap reaches 8 days, and when it closes — never every day. **One** mail to the ARS
({ars}) when there is something new{", and every day (daily digest)" if region.watch.daily_digest else ""};
a notice to the technical contact of the establishment concerned ({contacts} establishment(s) with a contact).
Counts, dates, FINESS and file names only: never patient data. Rules: `docs/watch.md`.

The findings are those of the run's **logical date** (the latest cut-off at or before it): a run triggered for a
past date gives that date's findings; `rpu watch --region {region.code} --db URL --at "YYYY-MM-DD HH:MM"` prints
them without recording or mailing.

**When it fails** — `check` (the regional database `{region.db_conn_id}` is unreachable, or a migration is
missing: `rpu db migrate`): nothing was recorded, nothing mailed; fix and clear the task. `notify` (the SMTP
connection `{region.smtp_conn_id}` refuses the mail): the alerts stay *pending* in the history; clearing the task —
or the next day's run — sends them to the addresses still owed (never twice to one that accepted it; an address
refused for good is told once to operations). The log of `check` lists the findings.

{failure_doc(region, "watch")}
""",
    )
    def watch():
        @task
        def check(logical_date=None, dag_run=None) -> dict:
            """Find what is wrong at the run's cut-off and record it in the alert history."""
            import logging

            from rpu import store
            from rpu.connections import db_url
            from rpu.watch import alerts, mails, rules

            when = logical_date or getattr(dag_run, "run_after", None)
            now = pendulum.instance(when).in_timezone(region.timezone)
            with store.connection(db_url(region.db_conn_id)) as conn:
                found = rules.findings(conn, region, now)
                logging.getLogger("rpu.watch").info("%s", mails.describe(found))
                notices = alerts.record(conn, region, found, now)
            logging.getLogger("rpu.watch").info("%d notice(s) to mail: %s", len(notices), ", ".join(
                f"{n['kind']}/{n['notice']} {n['etab']}" for n in notices) or "none")
            return {"findings": found.to_dict(), "notices": notices}

        @task
        def notify(result: dict) -> list[dict]:
            """Mail the ARS summary and the establishments' notices, then mark the alerts notified."""
            import logging

            from rpu import store
            from rpu.connections import db_url
            from rpu.watch import mails

            with store.connection(db_url(region.db_conn_id)) as conn:
                sent = mails.notify(conn, region, result["findings"], result["notices"])
            logging.getLogger("rpu.watch").info("%d mail(s) sent: %s", len(sent), "; ".join(
                f"{m['template']} to {', '.join(m['to'])}" for m in sent) or "none")
            return sent

        notify(check())

    return watch()


BUILDERS = (build_watch,)
