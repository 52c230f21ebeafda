-- Does an accepted file still need its quality gate (never run, e.g. a crash between the load and the gate)?
SELECT f.status = 'accepted' AND NOT EXISTS (SELECT 1 FROM quality_run r WHERE r.file_id = f.id) AS needed
FROM received_file f
WHERE f.id = %(file_id)s;
