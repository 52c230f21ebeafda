-- The watch tells files received after the cut-off of their day (kind `late`, an event told once per file).
ALTER TABLE alert DROP CONSTRAINT alert_kind_check;
ALTER TABLE alert ADD CONSTRAINT alert_kind_check
    CHECK (kind IN ('missing', 'rejected', 'late', 'quality', 'abnormal_day', 'dp_drop', 'shadow_ready'));
