-- The national page's grid (ATIH's presentation page): for each region and month M of the year, the accepted
-- cumulative files that complete M (period ending in M), one per FINESS_ordre — its latest (EXTRACT, then
-- reception) — their number, their establishments and their RPU. With %(region)s: one region only.
WITH latest AS (
    SELECT DISTINCT ON (region, finess, ordre, month) region, finess, ordre, month, rpu
    FROM (SELECT f.*, extract(month FROM period_end)::int AS month
          FROM national_file f
          WHERE status = 'accepted' AND year = %(year)s
            AND (%(region)s::text IS NULL OR region = %(region)s)) f
    ORDER BY region, finess, ordre, month, extract DESC, received_at DESC, id DESC
)
SELECT region, month, count(*) AS files, count(DISTINCT finess) AS establishments, sum(rpu)::bigint AS rpu
FROM latest
GROUP BY region, month
ORDER BY region, month;
