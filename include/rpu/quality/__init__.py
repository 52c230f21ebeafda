"""Data quality with Great Expectations (GX 1.x): versioned suites, the quality gate of the intake, its stored
results, quarantine and release — one module per reason to change:

- (rpu.expectations: the committed suites as read, their catalogue and the check of a region's blocking names;
  a foundation module, which the region files' validation reads too)
- `suites`: the suites generated from rpu_format (`python -m rpu.quality --write`);
- `batch`: the batch columns of a visit, the day-count bounds (FEDORU);
- `gx`: the Great Expectations adapter (contexts, validation, results as plain dicts);
- `gate`: the quality gate of the intake (results stored, quarantine);
- `results`: reading the stored results (receipts, watch, reports);
- `release`: releasing a quarantined batch.

Suites. `include/expectations/rpu_visit.json` (one row per stored visit: value domains, CIM-10/CCAM/postal-code
formats, age, duration, coherence of entry and exit blocks, completeness ≥ 80 % per item) and
`include/expectations/rpu_batch.json` (one row per entry day of the batch: day counts against the
establishment's recent days) are *generated* from rpu_format and rpu.problems by `python -m rpu.quality --write`
and committed; tests/test_quality.py proves the committed files are the generated ones and that the suites, the
XSD and the per-visit rules (rpu.checks) agree. Every expectation carries in `meta` a stable `name` (the
per-visit rule's name when there is one: `SEXE_DOMAIN`, `DP_FORMAT`…, else `COMPLETENESS_DP`, `DAY_COUNT_LOW`…)
and a French `description` of the failure, used in receipts and by the watch. A suite's version is a hash of its
expectations: it changes whenever a rule does.

Gate (`gate_pending`: once per intake run, after its loads — the DAG's `gate` task, `rpu ingest` after all its
files —, over every batch still gate pending; GX set up once, each file judged on its own, its results stored in a
transaction of its own). The batch — the visits stored from the file — is `quality_batch_view.sql`, exposed to GX as
a view: one for all the run's batches (`rpu_quality.run_<backend pid>`, with the file's id), on which GX's SQL
execution engine gives every file's counts in one grouped query and its own verdict per file; and one per file with
failures (`rpu_quality.batch_<file id>`), for GX's SUMMARY details (unexpected values) of its failed expectations
only (docs/quality.md has the measures behind these choices). The day counts (rpu_batch) are a few rows, validated as a
pandas DataFrame. Results go to `quality_run` / `quality_result`; a failed expectation the region lists under
`quality: blocking:` quarantines the file (`quality_quarantine`): its visits stay stored but every export leaves
them out until `rpu release`. FEDORU: a quality problem is never a rejection. A crash of GX is recorded as the
gate's own failure (status `error`); the load stays.

`rpu validate --quality FILE` runs the same suites without a database server, in bounded memory: the checked rows'
columns (exactly those of quality_batch.sql: `batch_values`) stream into a temporary SQLite file, on which GX's SQL
engine runs rpu_visit.

Great Expectations (and pandas) are imported inside functions only: GX's import alone takes seconds.
"""
