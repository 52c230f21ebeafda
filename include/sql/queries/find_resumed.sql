-- A file already processed from the same place with the same content: a rerun after an interruption
-- (e.g. the load committed but the file could not be moved out of the inbox), not a new delivery.
SELECT id FROM received_file
WHERE sha256 = %(sha256)s AND remote_path = %(remote_path)s AND status <> 'duplicate'
ORDER BY id DESC LIMIT 1;
