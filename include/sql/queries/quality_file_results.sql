-- The latest run of each suite on one file, with its failed expectations (one row per failure; a run without
-- failure gives one row with expectation NULL) — what the file's receipt shows.
WITH latest AS (
    SELECT DISTINCT ON (suite) id, suite, suite_version, status, error, run_at
    FROM quality_run
    WHERE file_id = %(file_id)s
    ORDER BY suite, run_at DESC, id DESC
)
SELECT l.suite, l.suite_version, l.status, l.error AS run_error, l.run_at,
       r.expectation, r.success, r.blocking, r.unexpected_count, r.unexpected_percent, r.observed_value, r.error
FROM latest l
LEFT JOIN quality_result r ON r.run_id = l.id AND NOT r.success
ORDER BY l.suite DESC, r.expectation;
