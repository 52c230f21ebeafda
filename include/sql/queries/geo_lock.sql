-- One load of the postal code table at a time (two ATIH sends, or a send and `rpu geo load`): a second load
-- waits for the first to commit, then sees its rows instead of colliding on the primary key. Held until the
-- end of the transaction.
SELECT pg_advisory_xact_lock(hashtext('rpu-pmsi-geo'));
