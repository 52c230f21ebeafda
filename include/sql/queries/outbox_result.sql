-- What became of a delivery attempt: addresses accepted, addresses refused for good, what is still owed.
UPDATE mail_outbox
SET delivered = delivered || %(delivered)s::text[], refused = refused || %(refused)s, attempts = attempts + 1,
    last_error = %(error)s, state = %(state)s, done_at = CASE WHEN %(state)s = 'done' THEN now() END
WHERE id = %(id)s;
