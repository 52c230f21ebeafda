-- The receipt is written and the file moved out of the inbox.
UPDATE received_file SET delivered_at = now() WHERE id = %(file_id)s AND delivered_at IS NULL;
