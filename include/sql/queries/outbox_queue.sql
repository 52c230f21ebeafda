-- Queue a mail (rpu.outbox): it stays pending until every address accepted it or refused it for good.
INSERT INTO mail_outbox (region, template, subject, body_text, body_html, recipients)
VALUES (%(region)s, %(template)s, %(subject)s, %(text)s, %(html)s, %(to)s)
RETURNING id;
