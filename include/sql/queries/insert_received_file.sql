INSERT INTO received_file (
    file_name, sha256, size_bytes, sender, finess, etab, ordre, extract, period_start, period_end, status,
    duplicate_of, visits_total, visits_loaded, visits_rejected, visits_flagged, errors, warnings, flags, per_day,
    received_at, archive_path, remote_path, gate_pending)
VALUES (
    %(file_name)s, %(sha256)s, %(size_bytes)s, %(sender)s, %(finess)s, %(etab)s, %(ordre)s, %(extract)s,
    %(period_start)s, %(period_end)s, %(status)s, %(duplicate_of)s, %(visits_total)s, %(visits_loaded)s,
    %(visits_rejected)s, %(visits_flagged)s, %(errors)s, %(warnings)s, %(flags)s, %(per_day)s,
    coalesce(%(received_at)s, now()), %(archive_path)s, %(remote_path)s, %(status)s = 'accepted')
RETURNING id;
