-- A send found not conforming, told once per status: a row returned when it was not told yet.
INSERT INTO national_told (region, ledger_id, status, file_name)
VALUES (%(region)s, %(ledger_id)s, %(status)s, %(file_name)s)
ON CONFLICT DO NOTHING
RETURNING ledger_id;
