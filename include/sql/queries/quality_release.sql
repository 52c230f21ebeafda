-- `rpu release`: a held batch is released (who, when, why); nothing happens to one already released.
UPDATE quality_quarantine q
SET released_at = now(), released_by = %(by)s, release_reason = %(reason)s
FROM received_file f
WHERE q.file_id = %(file_id)s AND q.released_at IS NULL AND f.id = q.file_id
RETURNING q.file_id, f.file_name, f.etab, q.expectations, q.quarantined_at, q.released_at, q.released_by,
          q.release_reason;
