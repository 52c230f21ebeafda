-- Settings of the transaction of one export query (rpu.exports._copy_visits):
-- no JIT: its compile time is not repaid by a projection;
-- no sort: read the visits in index order (see 006_export_order.sql), the planner underrates what a sort of a
--   year of one establishment costs;
-- no parallel workers: the pace is set by the writer turning rows into lines, and workers would only take
--   its core (bench/export.py at 1M visits on 2 cores: 2.15 s serial, 2.77 s with 2 workers).
SET LOCAL jit = off;
SET LOCAL enable_sort = off;
SET LOCAL max_parallel_workers_per_gather = 0;
