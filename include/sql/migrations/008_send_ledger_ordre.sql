-- Outgoing files are per FINESS_ordre (ATIH counts files by FINESS_ordre), their EXTRACT is the time they were
-- built, and the ATIH run after 31 December also sends the closing file of the year (kind `closing`).
ALTER TABLE send_ledger ADD COLUMN ordre smallint;        -- ORDRE of the file's header; NULL: region-wide (ARS)
ALTER TABLE send_ledger ADD COLUMN extract timestamp;     -- EXTRACT of the file's header (local time of the region)
ALTER TABLE send_ledger ADD COLUMN held_back date[] NOT NULL DEFAULT '{}';  -- days of the period left out (held)
UPDATE send_ledger SET ordre = 0 WHERE etab IS NOT NULL;  -- every file written so far said <ORDRE>0</ORDRE>
ALTER TABLE send_ledger DROP CONSTRAINT send_ledger_kind_check;
ALTER TABLE send_ledger ADD CONSTRAINT send_ledger_kind_check
    CHECK (kind IN ('daily', 'cumulative', 'closing', 'reprise'));
DROP INDEX send_ledger_slot;
CREATE UNIQUE INDEX send_ledger_slot
    ON send_ledger (recipient, kind, coalesce(etab, ''), coalesce(ordre, -1), period_start, period_end, run_id,
                    file_name);
-- what a recipient holds for a FINESS_ordre (ATIH's reconciliation, the transmissions report)
CREATE INDEX send_ledger_etab_ordre ON send_ledger (recipient, etab, ordre, period_end);
