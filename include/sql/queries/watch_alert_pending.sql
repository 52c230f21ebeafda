-- Watch: the alerts with a notice not yet mailed, in the order they were found. Parameters: region.
SELECT id, kind, etab, key, state, first_seen, last_seen, closed_at, notified_state, last_notified,
       pending_notice, details
FROM alert
WHERE region = %(region)s AND pending_notice IS NOT NULL
ORDER BY first_seen, id;
