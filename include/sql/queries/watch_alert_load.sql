-- Watch: the alerts a run compares its findings with: every open alert, every alert with a notice not yet
-- mailed, and the alerts (open or closed) having the identity of a finding. Parameters: region, kinds, etabs,
-- keys (three arrays of the same length: the findings' identities).
SELECT id, kind, etab, key, state, first_seen, last_seen, closed_at, notified_state, last_notified,
       pending_notice, details
FROM alert
WHERE region = %(region)s
  AND (state = 'open' OR pending_notice IS NOT NULL
       OR (kind, etab, key) IN (SELECT * FROM unnest(%(kinds)s::text[], %(etabs)s::text[], %(keys)s::text[])))
ORDER BY id
FOR UPDATE;
