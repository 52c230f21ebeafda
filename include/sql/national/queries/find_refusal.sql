-- An entry refused unread (name, kind, size) and not yet delivered: a rerun records it once.
SELECT id FROM national_file
WHERE remote_path = %(remote_path)s AND size_bytes = %(size)s AND sha256 IS NULL AND status = 'rejected'
  AND delivered_at IS NULL
ORDER BY id DESC LIMIT 1;
