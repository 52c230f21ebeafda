-- Watch: a new alert. Parameters: region, kind, etab, key, state, seen, closed_at, pending_notice, details.
INSERT INTO alert (region, kind, etab, key, state, first_seen, last_seen, closed_at, pending_notice, details)
VALUES (%(region)s, %(kind)s, %(etab)s, %(key)s, %(state)s, %(seen)s, %(seen)s, %(closed_at)s, %(pending_notice)s,
        %(details)s)
RETURNING id;
