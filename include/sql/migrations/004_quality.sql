-- Quality gate (rpu.quality): the Great Expectations suites' results on every loaded batch (one received file's
-- visits), and the quarantine of batches a blocking expectation failed. No patient data outside `details`,
-- which holds GX's SUMMARY details (up to 20 unexpected values of a failed expectation, e.g. a wrong code).

-- Views of a batch live here for the time of one gate (rpu_quality.batch_<file id>, see quality_batch_view.sql).
CREATE SCHEMA rpu_quality;

CREATE TABLE quality_run (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id       bigint      NOT NULL REFERENCES received_file (id),
    suite         text        NOT NULL,              -- include/expectations/<suite>.json
    suite_version text        NOT NULL,              -- its meta.version (hash of its expectations)
    status        text        NOT NULL CHECK (status IN ('passed', 'failed', 'error', 'skipped')),
    engine        text        NOT NULL,              -- GX execution engine: sql | pandas
    error         text,                              -- why the gate could not judge (status error / skipped)
    parameters    jsonb       NOT NULL DEFAULT '{}', -- suite parameters (day-count bounds and their history)
    statistics    jsonb       NOT NULL DEFAULT '{}',
    duration_s    double precision,
    run_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quality_run_file ON quality_run (file_id, suite, run_at DESC);
CREATE INDEX quality_run_time ON quality_run (run_at);

CREATE TABLE quality_result (
    run_id             bigint  NOT NULL REFERENCES quality_run (id),
    expectation        text    NOT NULL,             -- the stable name (meta.name), e.g. SEXE_DOMAIN
    type               text    NOT NULL,             -- GX expectation type
    column_name        text,
    success            boolean NOT NULL,
    blocking           boolean NOT NULL DEFAULT false,  -- listed under quality.blocking when it ran
    element_count      bigint,
    unexpected_count   bigint,
    unexpected_percent double precision,
    missing_count      bigint,
    observed_value     jsonb,                        -- batch-level expectations (e.g. ROW_COUNT)
    details            jsonb   NOT NULL DEFAULT '{}',
    error              text,                         -- GX could not evaluate it
    PRIMARY KEY (run_id, expectation)
);
CREATE INDEX quality_result_failed ON quality_result (run_id) WHERE NOT success;

-- A held batch stays stored; the exports (export_*.sql) leave out the visits of a file held here and not
-- released. `rpu release` records who released it and when.
CREATE TABLE quality_quarantine (
    file_id        bigint      PRIMARY KEY REFERENCES received_file (id),
    expectations   text[]      NOT NULL,             -- the blocking expectations that failed (or GATE_ERROR)
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    released_at    timestamptz,
    released_by    text,
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE INDEX quality_quarantine_held ON quality_quarantine (file_id) WHERE released_at IS NULL;
