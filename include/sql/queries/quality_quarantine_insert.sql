-- A blocking expectation failed: the file's batch is held (kept, not forwarded) until `rpu release`.
INSERT INTO quality_quarantine (file_id, expectations)
VALUES (%(file_id)s, %(expectations)s)
ON CONFLICT (file_id) DO NOTHING;
