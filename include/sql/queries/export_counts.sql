-- Manifest of an export: visits per establishment and entry day over the period.
SELECT etab, entry_date, count(*) AS visits
FROM exportable_visit visit
WHERE entry_date BETWEEN %(start)s AND %(end)s AND (%(etab)s::text IS NULL OR etab = %(etab)s)
GROUP BY etab, entry_date
ORDER BY etab, entry_date
