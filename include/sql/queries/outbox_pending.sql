-- The pending mails of a region, oldest first (ids only: each is then taken under a row lock).
SELECT id FROM mail_outbox WHERE region = %(region)s AND state = 'pending' ORDER BY id;
