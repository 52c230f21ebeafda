-- Queue a mail (rpu.outbox): it stays pending until every address accepted it or refused it for good. A mail
-- with a dedupe key already queued (a retried task queuing it again) is not queued twice: no row returned.
INSERT INTO mail_outbox (region, template, dedupe_key, subject, body_text, body_html, recipients)
VALUES (%(region)s, %(template)s, %(key)s, %(subject)s, %(text)s, %(html)s, %(to)s)
ON CONFLICT (region, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
RETURNING id;
