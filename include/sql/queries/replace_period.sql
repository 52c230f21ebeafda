-- Cancel-and-replace, run inside the load transaction once the file's visits are in `stage`.
-- Parameters: file_id, etab, ordre, extract, period_start, period_end.
-- A day is applied unless a file with a later EXTRACT already provides it (then it is kept).
WITH days AS (
    SELECT d::date AS day
    FROM generate_series(%(period_start)s::date, %(period_end)s::date, interval '1 day') AS d
), decision AS (
    SELECT days.day, (ds.extract IS NOT NULL AND ds.extract > %(extract)s) AS keep_newer
    FROM days
    LEFT JOIN day_source ds ON ds.etab = %(etab)s AND ds.ordre = %(ordre)s AND ds.day = days.day
), upsert AS (
    INSERT INTO day_source (etab, ordre, day, file_id, extract)
    SELECT %(etab)s, %(ordre)s, day, %(file_id)s, %(extract)s FROM decision WHERE NOT keep_newer
    ON CONFLICT (etab, ordre, day) DO UPDATE SET file_id = EXCLUDED.file_id, extract = EXCLUDED.extract
)
SELECT coalesce(array_agg(day ORDER BY day) FILTER (WHERE NOT keep_newer), '{}') AS applied,
       coalesce(array_agg(day ORDER BY day) FILTER (WHERE keep_newer), '{}') AS kept
FROM decision;
