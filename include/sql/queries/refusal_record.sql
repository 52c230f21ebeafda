-- An address refused for good (5xx): remembered, to be told to the region's operations once.
INSERT INTO mail_refusal (region, address, code, message, template)
VALUES (%(region)s, %(address)s, %(code)s, %(message)s, %(template)s)
ON CONFLICT (region, address) DO UPDATE
SET code = EXCLUDED.code, message = EXCLUDED.message, last_refused = now();
