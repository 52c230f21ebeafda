-- The received file a quality gate is about.
SELECT id, status, etab, ordre
FROM received_file
WHERE id = %(file_id)s;
