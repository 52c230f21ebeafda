-- ATIH export, anonymised: no COMMUNE; CP replaced by the PMSI geographic code of residence (table pmsi_geo,
-- else the fallback below); NAISSANCE replaced by the age in whole years at entry. Otherwise as stored.
-- Fallback for a postal code missing from the table: abroad (99xxx), "commune unknown" (XX999) and unknown
-- (99999) codes are kept; another code of a known département becomes <dép>999; empty or malformed → 99999.
SELECT '<PATIENT>'
    || rpu_el('CODE_GEO', coalesce(g.code_geo, CASE
           WHEN v.cp IS NULL OR v.cp !~ '^[0-9][0-9AB][0-9]{3}$' THEN '99999'
           WHEN v.cp LIKE '99%%' OR v.cp LIKE '%%999' THEN v.cp
           ELSE substr(v.cp, 1, 2) || '999' END))
    || rpu_el('AGE', rpu_age(v.naissance, v.entry_date)::text)
    || rpu_el('SEXE', v.sexe) || rpu_el('ENTREE', to_char(v.entree, 'DD/MM/YYYY HH24:MI'))
    || rpu_el('MODE_ENTREE', v.mode_entree) || rpu_el('PROVENANCE', v.provenance)
    || rpu_el('TRANSPORT', v.transport) || rpu_el('TRANSPORT_PEC', v.transport_pec) || rpu_el('MOTIF', v.motif)
    || rpu_el('GRAVITE', v.gravite) || rpu_el('DP', v.dp) || rpu_list('LISTE_DA', 'DA', v.da)
    || rpu_list('LISTE_ACTES', 'ACTE', v.actes)
    || rpu_el('SORTIE', coalesce(to_char(v.sortie, 'DD/MM/YYYY HH24:MI'), v.raw_invalid ->> 'SORTIE'))
    || rpu_el('MODE_SORTIE', v.mode_sortie) || rpu_el('DESTINATION', v.destination) || rpu_el('ORIENT', v.orient)
    || '</PATIENT>'
FROM visit v
LEFT JOIN pmsi_geo g ON g.cp = v.cp
WHERE v.etab = %(etab)s AND v.entry_date BETWEEN %(start)s AND %(end)s
ORDER BY v.entree, v.file_id, v.idx
