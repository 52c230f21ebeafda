-- The watch also tells the quality gate's findings (rpu.quality): a new kind of alert, told once per file.
ALTER TABLE alert DROP CONSTRAINT alert_kind_check;
ALTER TABLE alert ADD CONSTRAINT alert_kind_check
    CHECK (kind IN ('missing', 'rejected', 'quality', 'abnormal_day', 'dp_drop', 'shadow_ready'));
