-- A file of this drop-directory entry already recorded, its delivery (receipt, move) not done: a rerun completes it.
SELECT id FROM national_file
WHERE remote_path = %(remote_path)s AND sha256 = %(sha256)s AND delivered_at IS NULL
ORDER BY id DESC LIMIT 1;
