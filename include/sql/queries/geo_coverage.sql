-- How well the postal code table covers the visits an ATIH send will anonymise: among the visits of the
-- establishments over the period whose postal code is a French one the table should know (5 characters, not
-- abroad 99xxx, not "commune unknown" xx999), how many the table maps. Parameters: etabs, start, end.
SELECT count(*) AS eligible,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pmsi_geo g WHERE g.cp = v.cp::char(5))) AS matched
FROM exportable_visit v
WHERE v.etab = ANY(%(etabs)s::char(9)[]) AND v.entry_date BETWEEN %(start)s AND %(end)s
  AND v.cp ~ '^[0-9][0-9AB][0-9]{3}$' AND v.cp NOT LIKE '99%%' AND v.cp NOT LIKE '%%999';
