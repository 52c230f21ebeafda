-- See quality_analyze_needed.sql: a sample of the table (default_statistics_target), well under a second.
ANALYZE visit;
