-- Watch: an alert found again (or found over). Parameters: id, state, seen, closed_at, pending_notice, details.
UPDATE alert
SET state = %(state)s, last_seen = greatest(last_seen, %(seen)s), closed_at = %(closed_at)s,
    pending_notice = %(pending_notice)s, details = %(details)s, updated_at = now()
WHERE id = %(id)s;
