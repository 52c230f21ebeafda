-- The end of a quality gate: its view of the batch goes ({file_id}: see quality_batch_view.sql).
DROP VIEW IF EXISTS rpu_quality.batch_{file_id};
