-- Run on a REGION's database: its ATIH files sent for the year, the latest send of each file name (a file
-- re-sent under the same name replaces the earlier one on the Syrius server).
SELECT DISTINCT ON (file_name) id, file_name, trim(etab) AS finess, ordre, kind, period_start, period_end, visits,
       sha256, sent_at
FROM send_ledger
WHERE recipient = 'atih' AND status = 'sent' AND sent_at IS NOT NULL
  AND period_start >= make_date(%(year)s, 1, 1) AND period_start <= make_date(%(year)s, 12, 31)
ORDER BY file_name, sent_at DESC, id DESC;
