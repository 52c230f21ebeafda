-- bench/export.py only: the days of 2025 of `etab` provided by a file (day_source), as the loads that wrote its
-- copied visits would have recorded them: the ATIH plan sends a FINESS_ordre only for the days some file provides.
INSERT INTO day_source (etab, ordre, day, file_id, extract)
SELECT %(etab)s, 0, d::date, (SELECT min(id) FROM received_file WHERE status = 'accepted'), timestamp '2026-01-01'
FROM generate_series(date '2025-01-01', date '2025-12-31', interval '1 day') AS d
ON CONFLICT (etab, ordre, day) DO NOTHING;
