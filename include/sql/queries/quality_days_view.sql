-- The batches the rpu_batch suite validates (quality_days.sql: the visits stored from a file per entry day it
-- applied, 0 for a day without any), as a view Great Expectations reads for the time of one quality gate: the
-- day counts of every file a gate judges at once (rpu_quality.runday_<backend pid>), with the file's id
-- (rpu_file_id) and its own lower bound of one day (rpu_day_min: the suite parameter day_min, computed from the
-- establishment's history by rpu.quality.batch.count_parameters); or one file's day counts alone
-- (rpu_quality.day_<file id>, columns day and visits only) for GX's second pass on its failed expectations.
-- {view}, {file_id_column}, {day_min_column}, {params} ((id, day_min) pairs) and {file_ids} are written into the
-- text by rpu.quality.batch.days_view_sql, numbers only: a view has no parameters.
CREATE OR REPLACE VIEW rpu_quality.{view} AS
SELECT {file_id_column}d.day::date AS day, coalesce(c.visits, 0)::integer AS visits{day_min_column}
FROM (VALUES {params}) AS p(file_id, day_min)
JOIN received_file f ON f.id = p.file_id
CROSS JOIN LATERAL unnest(f.days_applied) AS d(day)
LEFT JOIN (SELECT file_id, entry_date, count(*) AS visits
           FROM visit
           WHERE file_id = ANY (ARRAY[{file_ids}]::bigint[])
           GROUP BY file_id, entry_date) c
       ON c.file_id = f.id AND c.entry_date = d.day;
