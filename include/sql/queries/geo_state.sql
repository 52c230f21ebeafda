-- The postal code table in use: its size and its last load (NULL when loaded before loads were recorded).
SELECT (SELECT count(*) FROM pmsi_geo) AS rows,
       l.origin, l.path, l.sha256, l.loaded_at
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT * FROM geo_load ORDER BY id DESC LIMIT 1) AS l ON true;
