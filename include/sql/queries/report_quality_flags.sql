-- `rpu report quality`: visits flagged per quality rule (visit.flags) and establishment, over the visits
-- entered in [start, end]. A visit carries each rule at most once. Parameters: start, end.
SELECT v.etab, f.rule, count(*) AS visits
FROM visit v
CROSS JOIN LATERAL unnest(v.flags) AS f(rule)
WHERE v.entry_date BETWEEN %(start)s::date AND %(end)s::date
GROUP BY v.etab, f.rule
ORDER BY v.etab, f.rule;
