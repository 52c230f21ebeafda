-- One suite validated on one file's batch (status 'error': the gate itself failed; 'skipped': empty batch).
INSERT INTO quality_run (file_id, suite, suite_version, status, engine, error, parameters, statistics, duration_s)
VALUES (%(file_id)s, %(suite)s, %(version)s, %(status)s, %(engine)s, %(error)s, %(parameters)s, %(statistics)s,
        %(duration_s)s)
RETURNING id;
