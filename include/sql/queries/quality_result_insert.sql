-- One expectation's result (GX SUMMARY level: counts and percents; `details`: the rest, e.g. unexpected values).
INSERT INTO quality_result (run_id, expectation, type, column_name, success, blocking, element_count,
                            unexpected_count, unexpected_percent, missing_count, observed_value, details, error)
VALUES (%(run_id)s, %(expectation)s, %(type)s, %(column_name)s, %(success)s, %(blocking)s, %(element_count)s,
        %(unexpected_count)s, %(unexpected_percent)s, %(missing_count)s, %(observed_value)s, %(details)s,
        %(error)s);
