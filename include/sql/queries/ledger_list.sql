-- The send ledger, newest first (filters optional).
SELECT id, recipient, kind, etab, ordre, period_start, period_end, file_name, visits, status, attempts, extract,
       prepared_at, sent_at, run_id, sha256, held_back, error
FROM send_ledger
WHERE (%(recipient)s::text IS NULL OR recipient = %(recipient)s)
  AND (%(etab)s::text IS NULL OR etab = %(etab)s)
ORDER BY prepared_at DESC, id DESC
LIMIT %(limit)s;
