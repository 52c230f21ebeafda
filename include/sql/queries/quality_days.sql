-- The batches the rpu_batch suite validates, for the files of a gate at once: the visits stored from each file
-- per entry day it applied (a day it applied without any visit counts 0; days left to a newer extraction are not
-- the file's). quality_days_view.sql is the same as the view GX reads.
SELECT f.id AS file_id, d.day::date AS day, coalesce(c.visits, 0) AS visits
FROM received_file f
CROSS JOIN LATERAL unnest(f.days_applied) AS d(day)
LEFT JOIN (SELECT file_id, entry_date, count(*) AS visits
           FROM visit
           WHERE file_id = ANY (%(file_ids)s::bigint[])
           GROUP BY file_id, entry_date) c
       ON c.file_id = f.id AND c.entry_date = d.day
WHERE f.id = ANY (%(file_ids)s::bigint[])
ORDER BY f.id, d.day;
