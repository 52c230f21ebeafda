-- ATIH export, anonymised: no COMMUNE; CP replaced by the PMSI geographic code of residence (table pmsi_geo,
-- else the fallback below); NAISSANCE replaced by the age in whole years at entry. Otherwise as stored.
-- Fallback for a postal code missing from the table: abroad (99xxx), "commune unknown" (XX999) and unknown
-- (99999) codes are kept; another code of a known département becomes <dép>999; empty or malformed → 99999.
-- Rendering and order as in export_oscour.sql.
SELECT CASE WHEN x.vals ~ '[&<>\\\t\n\r]' THEN rpu_xml_line(x.line) ELSE rpu_xml_brackets(x.line) END
FROM (
    SELECT format(rpu_xml_template('<PATIENT><CODE_GEO>%%s</CODE_GEO><AGE>%%s</AGE><SEXE>%%s</SEXE>'
               '<ENTREE>%%s</ENTREE><MODE_ENTREE>%%s</MODE_ENTREE><PROVENANCE>%%s</PROVENANCE><TRANSPORT>%%s</TRANSPORT>'
               '<TRANSPORT_PEC>%%s</TRANSPORT_PEC><MOTIF>%%s</MOTIF><GRAVITE>%%s</GRAVITE><DP>%%s</DP>'
               '<LISTE_DA>%%s</LISTE_DA><LISTE_ACTES>%%s</LISTE_ACTES><SORTIE>%%s</SORTIE><MODE_SORTIE>%%s</MODE_SORTIE>'
               '<DESTINATION>%%s</DESTINATION><ORIENT>%%s</ORIENT></PATIENT>'),
               coalesce(g.code_geo, CASE
                   WHEN v.cp IS NULL OR v.cp !~ '^[0-9][0-9AB][0-9]{3}$' THEN '99999'
                   WHEN v.cp LIKE '99%%' OR v.cp LIKE '%%999' THEN v.cp
                   ELSE substr(v.cp, 1, 2) || '999' END),
               rpu_age(v.naissance, v.entry_date), v.sexe, to_char(v.entree, 'DD/MM/YYYY HH24:MI'), v.mode_entree,
               v.provenance, v.transport, v.transport_pec, v.motif, v.gravite, v.dp, rpu_xml_items('DA', v.da),
               rpu_xml_items('ACTE', v.actes),
               coalesce(to_char(v.sortie, 'DD/MM/YYYY HH24:MI'), v.raw_invalid ->> 'SORTIE'), v.mode_sortie,
               v.destination, v.orient) AS line,
           concat(v.raw_invalid ->> 'SORTIE', v.sexe, v.mode_entree, v.provenance, v.transport, v.transport_pec,
                  v.motif, v.gravite, v.dp, array_to_string(v.da, ''), array_to_string(v.actes, ''),
                  v.mode_sortie, v.destination, v.orient) AS vals,
           v.entry_date, v.id
    FROM visit v
    LEFT JOIN pmsi_geo g ON g.cp = v.cp
    WHERE v.etab = %(etab)s AND v.entry_date BETWEEN %(start)s AND %(end)s
      AND NOT EXISTS (SELECT 1 FROM quality_quarantine q WHERE q.file_id = v.file_id AND q.released_at IS NULL)
) x
ORDER BY x.entry_date, x.id
