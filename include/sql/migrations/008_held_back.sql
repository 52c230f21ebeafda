-- "Held back": a stored batch that must not reach any recipient yet. Today that is a batch the quality gate
-- quarantined and nobody released; this view is the one place that says so. The exports leave out the visits
-- of these files (export_*.sql), and a file sent never declares a day whose stored data comes from one of them
-- (rpu.exports narrows or splits its period, export_days.sql): the recipient keeps what it had for that day
-- rather than an empty day. Widen this view (another migration) to hold back more, e.g. batches not yet gated.
CREATE VIEW held_back_file AS
SELECT file_id FROM quality_quarantine WHERE released_at IS NULL;
