-- Watch: files rejected between the previous cut-off (excluded) and the cut-off (included), with their reasons.
-- Counts, file names, FINESS and rules only (errors hold rule, message, line, visit: never a visit's items).
SELECT id, file_name, sender, finess, etab, received_at, visits_total, errors
FROM received_file
WHERE status = 'rejected' AND received_at > %(previous)s AND received_at <= %(cutoff)s
ORDER BY received_at, id;
