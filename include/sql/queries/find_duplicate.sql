-- The first file already processed with the same content (sha256), whatever its outcome.
SELECT id, status, file_name FROM received_file
WHERE sha256 = %(sha256)s AND status <> 'duplicate'
ORDER BY id LIMIT 1;
