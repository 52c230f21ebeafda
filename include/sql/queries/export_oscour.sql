-- OSCOUR (RPU 2006) export: one <PATIENT> element per line, as stored (values kept as received; unreadable
-- dates given back raw), for one establishment and a period of entry dates. Streamed by COPY ... TO STDOUT.
SELECT '<PATIENT>' || rpu_el('CP', cp) || rpu_el('COMMUNE', commune)
    || rpu_el('NAISSANCE', coalesce(to_char(naissance, 'DD/MM/YYYY'), raw_invalid ->> 'NAISSANCE'))
    || rpu_el('SEXE', sexe) || rpu_el('ENTREE', to_char(entree, 'DD/MM/YYYY HH24:MI'))
    || rpu_el('MODE_ENTREE', mode_entree) || rpu_el('PROVENANCE', provenance) || rpu_el('TRANSPORT', transport)
    || rpu_el('TRANSPORT_PEC', transport_pec) || rpu_el('MOTIF', motif) || rpu_el('GRAVITE', gravite)
    || rpu_el('DP', dp) || rpu_list('LISTE_DA', 'DA', da) || rpu_list('LISTE_ACTES', 'ACTE', actes)
    || rpu_el('SORTIE', coalesce(to_char(sortie, 'DD/MM/YYYY HH24:MI'), raw_invalid ->> 'SORTIE'))
    || rpu_el('MODE_SORTIE', mode_sortie) || rpu_el('DESTINATION', destination) || rpu_el('ORIENT', orient)
    || '</PATIENT>'
FROM visit
WHERE etab = %(etab)s AND entry_date BETWEEN %(start)s AND %(end)s
ORDER BY entree, file_id, idx
