-- Each establishment's recent days before a batch (FEDORU day counts), for the files of a gate at once: visits per
-- day stored for the file's establishment and ORDRE, over the days some file provided (day_source) in
-- [since, until) — the arrays hold, file by file, its id, FINESS, ORDRE and bounds.
SELECT x.file_id, ds.day, count(v.id) AS visits
FROM unnest(%(file_ids)s::bigint[], %(etabs)s::text[], %(ordres)s::smallint[], %(sinces)s::date[],
            %(untils)s::date[]) AS x(file_id, etab, ordre, since, until)
JOIN day_source ds ON ds.etab = x.etab AND ds.ordre = x.ordre AND ds.day >= x.since AND ds.day < x.until
LEFT JOIN visit v ON v.etab = ds.etab AND v.ordre = ds.ordre AND v.entry_date = ds.day
GROUP BY x.file_id, ds.day
ORDER BY x.file_id, ds.day;
