-- Watch: the entry days from `start` to `end` for which no file of the establishment provides data (no
-- day_source row): what a reprise must ask for once transmission is back. Parameters: etab, start, end.
SELECT d::date AS day
FROM generate_series(%(start)s::date, %(end)s::date, interval '1 day') AS d
WHERE NOT EXISTS (SELECT 1 FROM day_source s WHERE s.etab = %(etab)s AND s.day = d::date)
ORDER BY 1;
