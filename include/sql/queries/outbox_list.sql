-- The mails of a region still owed to someone, oldest first.
SELECT id, template, subject, recipients, delivered, refused, attempts, last_error, queued_at
FROM mail_outbox
WHERE region = %(region)s AND state = 'pending'
ORDER BY id;
