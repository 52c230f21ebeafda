UPDATE received_file
SET visits_loaded = %(loaded)s, days_applied = %(applied)s, days_kept_newer = %(kept)s, processed_at = now()
WHERE id = %(file_id)s;
