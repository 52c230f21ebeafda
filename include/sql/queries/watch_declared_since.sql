-- Watch: since when each establishment that never sent an accepted file has been watched as declared without
-- data — the first cut-off of its alert `missing` keyed 'never'. Parameters: region.
SELECT etab, first_seen FROM alert WHERE region = %(region)s AND kind = 'missing' AND key = 'never';
