-- The end of a quality gate: its view of the batches goes ({view}: see quality_batch_view.sql).
DROP VIEW IF EXISTS rpu_quality.{view};
