-- Did a received file come through the SFTP inbox (its receipt is in its establishment's ack/)?
SELECT f.remote_path IS NOT NULL AS remote
FROM received_file f
WHERE f.id = %(file_id)s;
