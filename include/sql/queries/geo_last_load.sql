-- The content hash of the last load of a file named by a region (`atih.geo_table`), if it was ever loaded.
SELECT sha256 FROM geo_load WHERE origin = 'region' AND path = %(path)s ORDER BY id DESC LIMIT 1;
