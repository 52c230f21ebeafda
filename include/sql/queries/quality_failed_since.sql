-- For the watch: quality runs since a time that did not pass, with their failed expectations (one row per
-- failure; an erroneous run without results gives one row with expectation NULL), and whether the file is held.
SELECT f.id AS file_id, f.file_name, f.etab, f.sender, f.received_at, l.run_at, l.suite, l.status,
       l.error AS run_error, r.expectation, r.success, r.blocking, r.unexpected_count, r.unexpected_percent,
       r.observed_value, r.error,
       EXISTS (SELECT 1 FROM quality_quarantine q WHERE q.file_id = f.id AND q.released_at IS NULL) AS quarantined
FROM quality_run l
JOIN received_file f ON f.id = l.file_id
LEFT JOIN quality_result r ON r.run_id = l.id AND NOT r.success
WHERE l.run_at >= %(since)s AND l.status IN ('failed', 'error')
ORDER BY l.run_at, f.id, l.suite DESC, r.expectation;
