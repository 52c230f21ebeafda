-- Manifest of an export: visits per establishment and entry day over the period.
SELECT etab, entry_date, count(*) AS visits
FROM visit
WHERE entry_date BETWEEN %(start)s AND %(end)s AND (%(etab)s::text IS NULL OR etab = %(etab)s)
  AND NOT EXISTS (SELECT 1 FROM quality_quarantine q WHERE q.file_id = visit.file_id AND q.released_at IS NULL)
GROUP BY etab, entry_date
ORDER BY etab, entry_date
