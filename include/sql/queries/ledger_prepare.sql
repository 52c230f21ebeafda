-- Record a prepared file; a slot whose local file was lost is prepared again (same slot, new content).
INSERT INTO send_ledger (recipient, kind, etab, ordre, period_start, period_end, run_id, file_name, sha256,
                         size_bytes, visits, local_path, extract, held_back, status)
VALUES (%(recipient)s, %(kind)s, %(etab)s, %(ordre)s, %(period_start)s, %(period_end)s, %(run_id)s, %(file_name)s,
        %(sha256)s, %(size_bytes)s, %(visits)s, %(local_path)s, %(extract)s, %(held_back)s, 'prepared')
ON CONFLICT (recipient, kind, coalesce(etab, ''), coalesce(ordre, -1), period_start, period_end, run_id, file_name)
DO UPDATE
SET sha256 = EXCLUDED.sha256, size_bytes = EXCLUDED.size_bytes, visits = EXCLUDED.visits,
    local_path = EXCLUDED.local_path, extract = EXCLUDED.extract, held_back = EXCLUDED.held_back,
    status = 'prepared', error = NULL, prepared_at = now()
RETURNING *;
