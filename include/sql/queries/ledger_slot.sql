-- The ledger entry of a slot (recipient, kind, FINESS_ordre, period, run, file name), if any.
SELECT * FROM send_ledger
WHERE recipient = %(recipient)s AND kind = %(kind)s AND coalesce(etab, '') = coalesce(%(etab)s, '')
  AND coalesce(ordre, -1) = coalesce(%(ordre)s::smallint, -1)
  AND period_start = %(period_start)s AND period_end = %(period_end)s AND run_id = %(run_id)s
  AND file_name = %(file_name)s;
