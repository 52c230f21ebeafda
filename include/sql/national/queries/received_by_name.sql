-- What the Syrius platform received from a region under these file names, oldest first.
SELECT id, file_name, status, rule, sha256, rpu, received_at
FROM national_file
WHERE region = %(region)s AND file_name = ANY(%(names)s)
ORDER BY received_at, id;
