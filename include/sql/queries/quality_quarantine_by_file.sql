-- The quarantine of one file, if any (held or released).
SELECT q.file_id, f.file_name, f.etab, q.expectations, q.quarantined_at, q.released_at, q.released_by, q.release_reason
FROM quality_quarantine q
JOIN received_file f ON f.id = q.file_id
WHERE q.file_id = %(file_id)s;
