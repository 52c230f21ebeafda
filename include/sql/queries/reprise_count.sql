-- Simulation of a reprise: how many stored visits a file of the period would hold — the same rows as
-- export_oscour / export_atih (one FINESS_ordre) or export_ars (ordre NULL: every FINESS_ordre of the
-- establishment), held-back batches left out.
SELECT count(*) AS visits
FROM exportable_visit visit
WHERE etab = %(etab)s AND entry_date BETWEEN %(start)s AND %(end)s
  AND (%(ordre)s::smallint IS NULL OR ordre = %(ordre)s)
