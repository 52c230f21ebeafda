-- Views of batches left by a gate that crashed: a file's views (batch_<file id>, day_<file id>) once its file has a
-- quality run (a gate that crashed before storing anything runs again when its file is taken up again, and
-- replaces them); a run's views (run_<backend pid>, runday_<backend pid>) once its session is gone. To drop.
SELECT c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'rpu_quality'
WHERE c.relkind = 'v'
  AND ((c.relname ~ '^(batch|day)_[0-9]+$'
        AND EXISTS (SELECT 1 FROM quality_run r
                    WHERE r.file_id = substring(c.relname FROM '_([0-9]+)$')::bigint))
    OR (c.relname ~ '^(run|runday)_[0-9]+$'
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                        WHERE a.pid = substring(c.relname FROM '_([0-9]+)$')::integer)));
