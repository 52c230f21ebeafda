-- Watch: per establishment, its last accepted file received up to the cut-off, and the last one received up to
-- the previous cut-off (to tell a file of the watched day from an older one). Parameters: cutoff, previous.
SELECT etab,
       max(received_at) AS last_accepted,
       max(received_at) FILTER (WHERE received_at <= %(previous)s) AS last_before
FROM received_file
WHERE status = 'accepted' AND etab IS NOT NULL AND received_at <= %(cutoff)s
GROUP BY etab;
