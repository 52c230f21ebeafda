-- Drill-down of one region: per FINESS_ordre and month M, the latest accepted file completing M (as in grid.sql).
SELECT DISTINCT ON (finess, ordre, month) trim(finess) AS finess, ordre, month, rpu, file_name, extract,
       received_at, id AS file_id
FROM (SELECT f.*, extract(month FROM period_end)::int AS month
      FROM national_file f
      WHERE status = 'accepted' AND year = %(year)s AND region = %(region)s) f
ORDER BY finess, ordre, month, extract DESC, received_at DESC, id DESC;
