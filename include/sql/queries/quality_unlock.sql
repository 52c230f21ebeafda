-- Releases quality_lock.sql.
SELECT pg_advisory_unlock(hashtext('rpu-etab:' || %(etab)s));
