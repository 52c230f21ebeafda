-- `rpu report transmissions`: the ATIH-like grid of one year, per establishment and month, each figure
-- cumulative from 1 January to the end of the month, with the ATIH file sent for that month (send ledger).
-- One row per (establishment, month); etab NULL gathers rejected files whose establishment is unknown.
-- Parameters: year_start (1 January), year_end (31 December), tz (the region's time zone).
-- Counting rules (docs/reports.md):
--   files     accepted files whose EXTRACT falls in [1 January, end of month]; duplicates and rejected files
--             do not count.
--   rejected  rejected files, by EXTRACT or, when it could not be read, by local date of reception; under
--             the establishment of the header, else the depositing one (sender).
--   rpus      visits stored now whose entry date falls in [1 January, end of month].
--   atih_*    per FINESS_ordre, the `sent` ATIH file (kind cumulative, closing or reprise, period starting
--             1 January) whose period ends latest within the month, the latest sent among equals; summed over
--             the establishment's FINESS_ordre (file names joined); atih_stored = visits of that FINESS_ordre
--             stored now over that file's period (what the file would hold if it were built today).
WITH months AS (
    SELECT m::date AS month_start, (m + interval '1 month' - interval '1 day')::date AS month_end
    FROM generate_series(%(year_start)s::date, %(year_end)s::date, interval '1 month') AS m
), files AS (
    SELECT coalesce(f.etab, f.sender) AS etab, date_trunc('month', f.at)::date AS month_start,
           count(*) FILTER (WHERE f.status = 'accepted') AS files,
           count(*) FILTER (WHERE f.status = 'rejected') AS rejected
    FROM (SELECT etab, sender, status, coalesce(extract, received_at AT TIME ZONE %(tz)s) AS at
          FROM received_file
          WHERE status IN ('accepted', 'rejected')) AS f
    WHERE f.at >= %(year_start)s::date AND f.at < %(year_end)s::date + 1
    GROUP BY 1, 2
), daily AS MATERIALIZED (
    SELECT etab, ordre, entry_date, count(*) AS rpus
    FROM visit
    WHERE entry_date BETWEEN %(year_start)s::date AND %(year_end)s::date
    GROUP BY etab, ordre, entry_date
), rpus AS (
    SELECT etab, date_trunc('month', entry_date)::date AS month_start, sum(rpus) AS rpus
    FROM daily
    GROUP BY 1, 2
), sent_ordre AS (
    SELECT DISTINCT ON (l.etab, l.ordre, m.month_start)
           l.etab, coalesce(l.ordre, 0) AS ordre, m.month_start, l.kind, l.period_start, l.period_end, l.visits,
           l.file_name, l.sent_at
    FROM send_ledger l
    JOIN months m ON l.period_end BETWEEN m.month_start AND m.month_end
    WHERE l.recipient = 'atih' AND l.status = 'sent' AND l.kind IN ('cumulative', 'closing', 'reprise')
      AND l.etab IS NOT NULL AND l.period_start = %(year_start)s::date
    ORDER BY l.etab, l.ordre, m.month_start, l.period_end DESC, l.sent_at DESC NULLS LAST, l.id DESC
), sent_stored AS (
    SELECT s.etab, s.ordre, s.month_start, coalesce(sum(d.rpus), 0) AS stored
    FROM sent_ordre s
    LEFT JOIN daily d ON d.etab = s.etab AND d.ordre = s.ordre
                     AND d.entry_date BETWEEN s.period_start AND s.period_end
    GROUP BY s.etab, s.ordre, s.month_start
), sent AS (
    SELECT s.etab, s.month_start, (array_agg(s.kind ORDER BY s.sent_at DESC NULLS LAST))[1] AS kind,
           min(s.period_start) AS period_start, max(s.period_end) AS period_end, sum(s.visits) AS visits,
           string_agg(s.file_name, ', ' ORDER BY s.ordre) AS file_name, max(s.sent_at) AS sent_at,
           sum(ss.stored) AS stored
    FROM sent_ordre s
    JOIN sent_stored ss USING (etab, ordre, month_start)
    GROUP BY s.etab, s.month_start
), etabs AS (
    SELECT etab FROM files UNION SELECT etab FROM rpus UNION SELECT etab FROM sent
)
SELECT e.etab, m.month_start, m.month_end,
       (sum(coalesce(f.files, 0)) OVER w)::bigint AS files,
       (sum(coalesce(f.rejected, 0)) OVER w)::bigint AS rejected,
       (sum(coalesce(r.rpus, 0)) OVER w)::bigint AS rpus,
       s.kind AS atih_kind, s.period_start AS atih_period_start, s.period_end AS atih_period_end,
       s.visits AS atih_visits, s.stored::bigint AS atih_stored, s.file_name AS atih_file,
       s.sent_at AS atih_sent_at
FROM etabs e
CROSS JOIN months m
LEFT JOIN files f ON f.etab IS NOT DISTINCT FROM e.etab AND f.month_start = m.month_start
LEFT JOIN rpus r ON r.etab = e.etab AND r.month_start = m.month_start
LEFT JOIN sent s ON s.etab = e.etab AND s.month_start = m.month_start
WINDOW w AS (PARTITION BY e.etab ORDER BY m.month_start)
ORDER BY e.etab NULLS LAST, m.month_start;
