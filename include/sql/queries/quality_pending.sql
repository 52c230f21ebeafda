-- The accepted files whose batch still waits for its quality gate (this run's loads, and those of an earlier run
-- that stopped between a load and its gate), oldest first.
SELECT f.id, f.status, f.etab, f.ordre
FROM received_file f
WHERE f.gate_pending AND f.status = 'accepted'
ORDER BY f.id;
