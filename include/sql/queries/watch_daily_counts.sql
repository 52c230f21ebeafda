-- Watch: per establishment and entry day from `start` to `end` for which data was received (a day_source row,
-- so a day sent with no visit counts 0 and a day never sent is absent): the visits stored, and for the DP
-- coding rate the visits where a DP is expected (ORIENT not FUGUE, PSA, SCAM, REO) and those with a DP filled in
-- and valid (CIM-10 format: not flagged DP_FORMAT). Parameters: etabs (the establishments watched: the
-- indexes on (etab, day) serve each of them), start, end.
WITH days AS (
    SELECT DISTINCT etab, day FROM day_source
    WHERE etab = ANY (%(etabs)s::bpchar[]) AND day BETWEEN %(start)s AND %(end)s
), counts AS (
    SELECT etab, entry_date AS day,
           count(*) AS visits,
           count(*) FILTER (WHERE upper(coalesce(orient, '')) NOT IN ('FUGUE', 'PSA', 'SCAM', 'REO')) AS dp_expected,
           count(*) FILTER (WHERE upper(coalesce(orient, '')) NOT IN ('FUGUE', 'PSA', 'SCAM', 'REO')
                              AND coalesce(btrim(dp), '') <> '' AND NOT ('DP_FORMAT' = ANY (flags))) AS dp_coded
    FROM visit
    WHERE etab = ANY (%(etabs)s::bpchar[]) AND entry_date BETWEEN %(start)s AND %(end)s
    GROUP BY etab, entry_date
)
SELECT d.etab, d.day, coalesce(c.visits, 0) AS visits, coalesce(c.dp_expected, 0) AS dp_expected,
       coalesce(c.dp_coded, 0) AS dp_coded
FROM days d
LEFT JOIN counts c ON c.etab = d.etab AND c.day = d.day
ORDER BY d.etab, d.day;
