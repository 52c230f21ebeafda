-- OSCOUR (RPU 2006) export of one FINESS_ordre over a period of entry dates: one row per visit, one column
-- per PATIENT item in the order of rpu_format.ITEMS, values as stored (unreadable dates given back raw).
-- rpu.exports writes each row as a <PATIENT> line (streamed by COPY ... TO STDOUT, NULL as '').
-- LISTE_DA / LISTE_ACTES children come with chr(1)/chr(2) for their brackets (see rpu_xml_items), which the
-- writer turns back into < and > after escaping the values.
-- Order: entry day, then load order, read from the index visit_etab_day_id (no sort; deterministic, so a
-- rebuilt file holds the same rows). Only exportable visits (view exportable_visit: not held back by the
-- quality gate, see held_back_file; the few held files are a list of ids computed once).
SELECT v.cp, v.commune, coalesce(to_char(v.naissance, 'DD/MM/YYYY'), v.raw_invalid ->> 'NAISSANCE'), v.sexe,
       to_char(v.entree, 'DD/MM/YYYY HH24:MI'), v.mode_entree, v.provenance, v.transport, v.transport_pec,
       v.motif, v.gravite, v.dp, rpu_xml_items('DA', v.da), rpu_xml_items('ACTE', v.actes),
       coalesce(to_char(v.sortie, 'DD/MM/YYYY HH24:MI'), v.raw_invalid ->> 'SORTIE'), v.mode_sortie,
       v.destination, v.orient
FROM exportable_visit v
WHERE v.etab = %(etab)s AND v.entry_date BETWEEN %(start)s AND %(end)s AND v.ordre = %(ordre)s
ORDER BY v.entry_date, v.id
