-- ATIH export, anonymised: no COMMUNE; CP replaced by the PMSI geographic code of residence (table pmsi_geo,
-- else the fallback below); NAISSANCE replaced by the age in whole years at entry. Otherwise as stored.
-- Fallback for a postal code missing from the table: abroad (99xxx), "commune unknown" (XX999) and unknown
-- (99999) codes are kept; another code of a known département becomes <dép>999; empty or malformed → 99999.
-- Columns in the order of rpu.exports.ATIH_ITEMS; rows, order and exportable visits as in export_oscour.sql.
-- The postal code table is read once into a jsonb object (a few thousand keys, looked up per visit): a join
-- would lose the index order and bring back a sort.
SELECT coalesce((SELECT jsonb_object_agg(rtrim(g.cp), rtrim(g.code_geo)) FROM pmsi_geo g) ->> v.cp, CASE
           WHEN v.cp IS NULL OR v.cp !~ '^[0-9][0-9AB][0-9]{3}$' THEN '99999'
           WHEN v.cp LIKE '99%%' OR v.cp LIKE '%%999' THEN v.cp
           ELSE substr(v.cp, 1, 2) || '999' END),
       rpu_age(v.naissance, v.entry_date), v.sexe, to_char(v.entree, 'DD/MM/YYYY HH24:MI'), v.mode_entree,
       v.provenance, v.transport, v.transport_pec, v.motif, v.gravite, v.dp, rpu_xml_items('DA', v.da),
       rpu_xml_items('ACTE', v.actes),
       coalesce(to_char(v.sortie, 'DD/MM/YYYY HH24:MI'), v.raw_invalid ->> 'SORTIE'), v.mode_sortie,
       v.destination, v.orient
FROM exportable_visit v
WHERE v.etab = %(etab)s AND v.entry_date BETWEEN %(start)s AND %(end)s AND v.ordre = %(ordre)s
ORDER BY v.entry_date, v.id
