"""The daily watch of a region: who did not transmit, whose file was rejected, which day looks wrong.

Three steps, each plain Python and each in its module (the `<region>_watch` DAG calls them; `rpu watch` runs the first only):

  `rules.findings(conn, region, now)` — what is wrong at the cut-off: establishments with no accepted file since the
      previous cut-off (consecutive days without transmission, last accepted file, "reprise needed" once the
      sliding window can no longer cover the gap; or "declared, not yet in production" and for how long, when
      none was ever accepted), establishments back to normal after a gap (with the entry days to ask in a
      reprise), files rejected since the previous cut-off (with their reasons), files that arrived after the
      cut-off of their day, abnormal days (visit count below μ − 3σ), sudden drops of the DP coding rate,
      shadow establishments ready to switch.
  `alerts.record(conn, region, findings, now)` — the alert history (table `alert`): each finding is found again every
      day under the same identity, and only a change of state is to be told: new; a transmission gap still
      open at 7 days ("reprise needed", once); a gap closed ("back to normal"). Returns what must be mailed.
  `mails.notify(conn, region, findings, notices)` — ONE mail to the region's ARS addresses summarising the notices
      (none when there is none, unless the region asks for a daily digest), and a notice to the technical
      contact of each establishment concerned that has one: queued in the outbox (rpu.outbox) together with
      marking the notices told, then delivered — an address refused for now is owed the mail until it accepts
      it, one refused for good is told to operations once.

The rules (cut-off windows, μ − 3σ on the same weekday, the DP drop, the state machine) are in docs/watch.md.
No patient data anywhere: counts, dates, FINESS, file names and rule names only. No Airflow import here.
"""
