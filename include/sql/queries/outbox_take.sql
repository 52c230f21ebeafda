-- One pending mail, locked for the time of its delivery attempt; none if another process is delivering it or
-- it is no longer pending.
SELECT id, template, subject, body_text, body_html, recipients, delivered, refused, attempts
FROM mail_outbox
WHERE id = %(id)s AND state = 'pending'
FOR UPDATE SKIP LOCKED;
