-- The establishment's recent days before a batch (FEDORU day counts): visits per day stored for the same
-- establishment and ORDRE, over the days some file provided (day_source) in [since, until).
SELECT ds.day, count(v.id) AS visits
FROM day_source ds
LEFT JOIN visit v ON v.etab = ds.etab AND v.ordre = ds.ordre AND v.entry_date = ds.day
WHERE ds.etab = %(etab)s AND ds.ordre = %(ordre)s AND ds.day >= %(since)s AND ds.day < %(until)s
GROUP BY ds.day
ORDER BY ds.day;
