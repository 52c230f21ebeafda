-- The batch the rpu_batch suite validates: visits stored from one file per entry day it applied (a day it
-- applied without any visit counts 0; days left to a newer extraction are not the file's).
SELECT d.day::date AS day, coalesce(c.visits, 0) AS visits
FROM received_file f
CROSS JOIN LATERAL unnest(f.days_applied) AS d(day)
LEFT JOIN (SELECT entry_date, count(*) AS visits FROM visit WHERE file_id = %(file_id)s GROUP BY entry_date) c
       ON c.entry_date = d.day
WHERE f.id = %(file_id)s
ORDER BY d.day;
