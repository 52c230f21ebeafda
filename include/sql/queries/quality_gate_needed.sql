-- Does an accepted file still wait for its quality gate (never run, e.g. a crash between the load and the gate)?
SELECT f.gate_pending AS needed
FROM received_file f
WHERE f.id = %(file_id)s;
