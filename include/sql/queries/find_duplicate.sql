-- The first ACCEPTED file with the same content (sha256) from the same sender — the SFTP directory it came
-- from, else (a file loaded by hand) the establishment it was stored under. A rejected file is never an
-- original: refused for its context (wrong inbox, FINESS not declared yet, size limit since raised), the same
-- bytes sent again correctly are judged again. Parameters: sha256, who (sender, else establishment).
SELECT id, status, file_name FROM received_file
WHERE sha256 = %(sha256)s AND status = 'accepted' AND coalesce(sender, etab) = %(who)s
ORDER BY id LIMIT 1;
