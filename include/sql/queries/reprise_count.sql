-- Simulation of a reprise: how many stored visits of one establishment a file of the period would hold
-- (the same rows as export_oscour / export_atih / export_ars for that establishment and period).
SELECT count(*) AS visits
FROM exportable_visit visit
WHERE etab = %(etab)s AND entry_date BETWEEN %(start)s AND %(end)s
