-- Watch: accepted files received in the watched period after the cut-off of the day they were due — the day
-- after their last entry day (a daily file of J-7 … J-1 is due on J before the cut-off). Such a file missed
-- that day's watch and that morning's sends. Parameters: previous, cutoff, tz, cut_time.
SELECT id, file_name, etab, received_at, period_end, visits_loaded
FROM received_file
WHERE status = 'accepted' AND etab IS NOT NULL AND period_end IS NOT NULL
  AND received_at > %(previous)s AND received_at <= %(cutoff)s
  AND (received_at AT TIME ZONE %(tz)s)::date = period_end + 1
  AND (received_at AT TIME ZONE %(tz)s)::time > %(cut_time)s
ORDER BY received_at, id;
