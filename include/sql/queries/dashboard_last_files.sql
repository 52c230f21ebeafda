-- Dashboard: the last file received from each establishment (whatever became of it), with why it was
-- rejected. The establishment is the header's (etab) or, when the header could not be read, the depositing
-- one (sender). One row per establishment.
SELECT DISTINCT ON (coalesce(etab, sender))
       coalesce(etab, sender) AS etab, id, file_name, status, received_at, extract, period_start, period_end,
       visits_total, visits_loaded, visits_rejected, visits_flagged,
       errors -> 0 ->> 'message' AS first_error
FROM received_file
WHERE coalesce(etab, sender) IS NOT NULL
ORDER BY coalesce(etab, sender), received_at DESC, id DESC;
