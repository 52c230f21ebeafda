-- The quarantines of an establishment's files of one name (the release form's FINESS + file name), held first.
SELECT q.file_id, q.released_at
FROM quality_quarantine q
JOIN received_file f ON f.id = q.file_id
WHERE f.etab = %(etab)s AND f.file_name = %(file_name)s
ORDER BY q.released_at IS NOT NULL, f.id DESC;
