-- Held by a quality gate while Great Expectations reads the batch: the establishment's load lock, the very key
-- rpu.loader.load_file takes (pg_advisory_xact_lock(hashtext('rpu-etab:' || etab))), at session level, so that no
-- load of the same establishment changes the batch between GX's queries.
SELECT pg_advisory_lock(hashtext('rpu-etab:' || %(etab)s));
