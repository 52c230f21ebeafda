-- Per establishment: the local days on which an accepted file was received, and the last accepted file.
SELECT etab,
       array_agg(DISTINCT (received_at AT TIME ZONE %(tz)s)::date ORDER BY (received_at AT TIME ZONE %(tz)s)::date)
           AS days,
       max(received_at) AS last_received
FROM received_file
WHERE status = 'accepted' AND etab IS NOT NULL AND received_at >= %(since)s
GROUP BY etab;
