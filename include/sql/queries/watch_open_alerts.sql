-- Watch: the open alerts of a region (what a dashboard shows), oldest first. Parameters: region.
SELECT id, kind, etab, key, first_seen, last_seen, notified_state, last_notified, details, open_days
FROM open_alert
WHERE region = %(region)s
ORDER BY etab, first_seen, id;
