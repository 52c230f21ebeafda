-- What became of a delivery attempt.
UPDATE send_ledger
SET status = %(status)s, error = %(error)s, remote_path = coalesce(%(remote_path)s, remote_path),
    attempts = attempts + 1, sent_at = CASE WHEN %(status)s = 'sent' THEN now() ELSE sent_at END
WHERE id = %(id)s
RETURNING *;
