-- Is the table loaded from this very file (its name and content hash)?
SELECT 1 FROM pmsi_geo WHERE source = %(tag)s LIMIT 1;
