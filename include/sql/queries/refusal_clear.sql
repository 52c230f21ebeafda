-- Addresses that accepted a mail again are no longer refused.
DELETE FROM mail_refusal WHERE region = %(region)s AND address = ANY(%(addresses)s::text[]);
