-- One received file as receipts and summaries show it (no patient data: counts, dates, FINESS, rules).
SELECT f.id, f.file_name, f.sha256, f.size_bytes, f.sender, f.finess, f.etab, f.ordre, f.extract,
       f.period_start, f.period_end,
       coalesce(o.status, f.status) AS status, f.status = 'duplicate' AS is_duplicate,
       f.duplicate_of, o.file_name AS original_name, o.processed_at AS original_processed_at,
       coalesce(o.visits_total, f.visits_total) AS visits_total,
       coalesce(o.visits_loaded, f.visits_loaded) AS visits_loaded,
       coalesce(o.visits_rejected, f.visits_rejected) AS visits_rejected,
       coalesce(o.visits_flagged, f.visits_flagged) AS visits_flagged,
       coalesce(o.days_applied, f.days_applied) AS days_applied,
       coalesce(o.days_kept_newer, f.days_kept_newer) AS days_kept_newer,
       coalesce(o.errors, f.errors) AS errors, coalesce(o.warnings, f.warnings) AS warnings,
       coalesce(o.flags, f.flags) AS flags, coalesce(o.per_day, f.per_day) AS per_day,
       f.received_at, f.processed_at, f.archive_path, f.remote_path
FROM received_file f
LEFT JOIN received_file o ON o.id = f.duplicate_of
WHERE f.id = %(file_id)s;
