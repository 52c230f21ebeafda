-- Before a quality gate: are the planner's statistics of `visit` blind to a batch this big? True when the table
-- was never analyzed or the batch is over a tenth of the rows it last counted (the point where autovacuum would
-- analyze it again anyway). Without fresh statistics PostgreSQL plans GX's queries on a large new batch as if it
-- were a few thousand rows: no parallel scan, twice the time (measured on 1M visits).
SELECT c.reltuples < 0 OR %(rows)s > 0.1 * c.reltuples AS needed
FROM pg_class c
WHERE c.oid = 'visit'::regclass;
