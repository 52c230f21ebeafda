-- What a file may declare: for each FINESS_ordre of the given establishments, the days of [start, end] that a
-- stored file provides (day_source: a file accepted for that day, even with no visit), and whether that file
-- is held back (view held_back_file). A day with no row is "no data": never declared as "no visits"; a held
-- day is never declared either, so that the recipient keeps what it had. Parameters: etabs (NULL: every
-- establishment), start, end.
SELECT s.etab, s.ordre, s.day, (h.file_id IS NOT NULL) AS held
FROM day_source s
LEFT JOIN held_back_file h ON h.file_id = s.file_id
WHERE (%(etabs)s::char(9)[] IS NULL OR s.etab = ANY(%(etabs)s::char(9)[])) AND s.day BETWEEN %(start)s AND %(end)s
ORDER BY s.etab, s.ordre, s.day;
