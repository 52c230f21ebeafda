-- An inbox entry refused before its content was read (no sha256) whose delivery did not finish: a rerun
-- completes it instead of recording it twice. Parameters: remote_path, size.
SELECT id FROM received_file
WHERE sha256 IS NULL AND remote_path = %(remote_path)s AND size_bytes = %(size)s AND delivered_at IS NULL
ORDER BY id DESC LIMIT 1;
