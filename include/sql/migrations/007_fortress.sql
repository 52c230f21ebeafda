-- Hostile input and faults (docs/intake.md, "Refusals" and "Exportable"):
--
-- 1. An inbox entry refused before its content is read (an unreadable or over-long name, a symlink or a
--    directory, a size over intake.max_file_mb) is recorded as a rejected file like any other, without a hash.
ALTER TABLE received_file ALTER COLUMN sha256 DROP NOT NULL;

-- 2. When the receipt was written and the file moved out of the inbox. Until then a second look at the same
--    content in the same place is the completion of an interrupted delivery (receipt and move only); after,
--    it is a new delivery, judged again (the same bytes sent again once a refusal's cause is fixed).
ALTER TABLE received_file ADD COLUMN delivered_at timestamptz;
UPDATE received_file SET delivered_at = processed_at WHERE remote_path IS NOT NULL;
CREATE INDEX received_file_undelivered ON received_file (remote_path) WHERE delivered_at IS NULL;

-- 3. A batch waits for its quality gate: an accepted file's visits are not exported between the load's commit
--    and the end of its gate (nor after a crash in between, until a rerun runs it). Files accepted before the
--    gate existed (migration 004) stay exportable; those accepted since whose gate never ran wait for it.
ALTER TABLE received_file ADD COLUMN gate_pending boolean NOT NULL DEFAULT false;
UPDATE received_file f SET gate_pending = true
WHERE f.status = 'accepted'
  AND NOT EXISTS (SELECT 1 FROM quality_run r WHERE r.file_id = f.id)
  AND f.received_at >= (SELECT applied_at FROM schema_migration WHERE version = 4);
CREATE INDEX received_file_gate_pending ON received_file (id) WHERE gate_pending;

-- "Held back": a stored batch that must not reach any recipient yet: a batch waiting for its quality gate, or
-- one the gate quarantined and nobody released. This view is the one place that says so. The exports leave out
-- the visits of these files (view exportable_visit below), and a file sent never declares a day whose stored
-- data comes from one of them (rpu.exports narrows or splits its period, export_days.sql): the recipient keeps
-- what it had for that day rather than an empty day.
CREATE VIEW held_back_file AS
SELECT f.id AS file_id FROM received_file f WHERE f.gate_pending
UNION ALL
SELECT q.file_id FROM quality_quarantine q WHERE q.released_at IS NULL;

-- The one definition of what may leave the region: the visits of batches not held back. Every export and count
-- of what a send holds reads this view (export_oscour, export_atih, export_ars, reprise_count, geo_coverage).
-- The held files are a handful: gathered once into an array (an InitPlan), which keeps the exports'
-- index-ordered scans of `visit` (006_export_order.sql) instead of an anti-join.
CREATE VIEW exportable_visit AS
SELECT v.*
FROM visit v
WHERE v.file_id <> ALL (ARRAY(SELECT h.file_id FROM held_back_file h));
