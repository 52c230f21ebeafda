-- Refused addresses not yet told to the region's operations, marked told in the same statement.
UPDATE mail_refusal SET reported_at = now()
WHERE region = %(region)s AND reported_at IS NULL
RETURNING address, code, message, template, first_refused;
