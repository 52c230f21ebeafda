-- Stored quality results for reports and dashboards: every expectation of every suite run on the files received
-- in [start, end] (dates of the session's time zone), optionally for one establishment; latest run per suite.
WITH latest AS (
    SELECT DISTINCT ON (r.file_id, r.suite) r.*
    FROM quality_run r
    JOIN received_file f ON f.id = r.file_id
    WHERE f.received_at >= %(start)s::date AND f.received_at < %(end)s::date + 1
      AND (%(etab)s::text IS NULL OR f.etab = %(etab)s)
    ORDER BY r.file_id, r.suite, r.run_at DESC, r.id DESC
)
SELECT f.id AS file_id, f.file_name, f.etab, f.received_at, l.suite, l.suite_version, l.status, l.run_at,
       l.duration_s, res.expectation, res.success, res.blocking, res.element_count, res.unexpected_count,
       res.unexpected_percent, res.observed_value,
       EXISTS (SELECT 1 FROM quality_quarantine q WHERE q.file_id = f.id AND q.released_at IS NULL) AS quarantined
FROM latest l
JOIN received_file f ON f.id = l.file_id
LEFT JOIN quality_result res ON res.run_id = l.id
ORDER BY f.received_at, f.id, l.suite DESC, res.expectation;
