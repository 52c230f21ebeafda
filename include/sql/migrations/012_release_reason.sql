-- A quarantine's release keeps its reason (the release form's "Motif", `rpu release --reason`) beside who and
-- when: the record an auditor reads, not only the run's parameters in Airflow.
ALTER TABLE quality_quarantine ADD COLUMN release_reason text;
