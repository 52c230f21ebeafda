-- Record a load of the postal code table (in the transaction of the load).
INSERT INTO geo_load (origin, path, sha256, rows) VALUES (%(origin)s, %(path)s, %(sha256)s, %(rows)s);
