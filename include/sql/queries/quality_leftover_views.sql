-- Views of batches left by a gate that crashed after storing its results (their files have a quality run): to
-- drop. A gate that crashed before storing anything runs again when its file is taken up again, and replaces it.
SELECT c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'rpu_quality'
WHERE c.relkind = 'v' AND c.relname ~ '^batch_[0-9]+$'
  AND EXISTS (SELECT 1 FROM quality_run r WHERE r.file_id = substr(c.relname, 7)::bigint);
