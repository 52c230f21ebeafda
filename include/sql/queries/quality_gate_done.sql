-- The gate of a batch ran (in the transaction that stores its results): the batch is exportable unless held.
UPDATE received_file SET gate_pending = false WHERE id = %(file_id)s;
