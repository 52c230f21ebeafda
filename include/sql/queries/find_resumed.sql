-- A file already processed from the same place with the same content whose delivery did not finish (receipt
-- and move out of the inbox not done, e.g. the load committed but the move failed): a rerun completes it.
-- Once delivered, the same bytes in the same place are a new delivery.
SELECT id FROM received_file
WHERE sha256 = %(sha256)s AND remote_path = %(remote_path)s AND status <> 'duplicate' AND delivered_at IS NULL
ORDER BY id DESC LIMIT 1;
