-- Watch: one recording at a time per region (held until the end of the transaction). Parameters: region.
SELECT pg_advisory_xact_lock(hashtext('rpu-watch:' || %(region)s));
