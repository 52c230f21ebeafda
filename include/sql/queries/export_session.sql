-- Settings of an export session (rpu.exports): see _tune_for_export.
SET jit = off;
SET work_mem = '64MB';
