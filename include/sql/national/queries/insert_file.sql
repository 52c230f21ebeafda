INSERT INTO national_file (region, file_name, remote_path, sha256, size_bytes, status, rule, message, finess, ordre,
                           extract, period_start, period_end, year, rpu, duplicate_of)
VALUES (%(region)s, %(file_name)s, %(remote_path)s, %(sha256)s, %(size_bytes)s, %(status)s, %(rule)s, %(message)s,
        %(finess)s, %(ordre)s, %(extract)s, %(period_start)s, %(period_end)s, %(year)s,
        CASE WHEN %(status)s = 'duplicate' THEN (SELECT rpu FROM national_file WHERE id = %(duplicate_of)s)
             ELSE %(rpu)s END,
        %(duplicate_of)s)
RETURNING id;
