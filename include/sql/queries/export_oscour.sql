-- OSCOUR (RPU 2006) export: one <PATIENT> element per line, as stored (values kept as received; unreadable
-- dates given back raw), for one establishment and a period of entry dates. Streamed by COPY ... TO STDOUT.
-- Speed: one format() per visit (not one concatenation per element); the template's brackets are chr(1)/chr(2)
-- so that a line whose values hold a character to escape (&, <, >, \, tab, newline — rare) is escaped whole
-- by rpu_xml_line(), and every other line only gets its brackets back (rpu_xml_brackets()). Order: entry
-- day, then load order (deterministic, so a rebuilt file is identical; cheap to sort).
SELECT CASE WHEN x.vals ~ '[&<>\\\t\n\r]' THEN rpu_xml_line(x.line) ELSE rpu_xml_brackets(x.line) END
FROM (
    SELECT format(rpu_xml_template('<PATIENT><CP>%%s</CP><COMMUNE>%%s</COMMUNE><NAISSANCE>%%s</NAISSANCE><SEXE>%%s</SEXE>'
               '<ENTREE>%%s</ENTREE><MODE_ENTREE>%%s</MODE_ENTREE><PROVENANCE>%%s</PROVENANCE><TRANSPORT>%%s</TRANSPORT>'
               '<TRANSPORT_PEC>%%s</TRANSPORT_PEC><MOTIF>%%s</MOTIF><GRAVITE>%%s</GRAVITE><DP>%%s</DP>'
               '<LISTE_DA>%%s</LISTE_DA><LISTE_ACTES>%%s</LISTE_ACTES><SORTIE>%%s</SORTIE><MODE_SORTIE>%%s</MODE_SORTIE>'
               '<DESTINATION>%%s</DESTINATION><ORIENT>%%s</ORIENT></PATIENT>'),
               v.cp, v.commune, coalesce(to_char(v.naissance, 'DD/MM/YYYY'), v.raw_invalid ->> 'NAISSANCE'), v.sexe,
               to_char(v.entree, 'DD/MM/YYYY HH24:MI'), v.mode_entree, v.provenance, v.transport, v.transport_pec,
               v.motif, v.gravite, v.dp, rpu_xml_items('DA', v.da), rpu_xml_items('ACTE', v.actes),
               coalesce(to_char(v.sortie, 'DD/MM/YYYY HH24:MI'), v.raw_invalid ->> 'SORTIE'), v.mode_sortie,
               v.destination, v.orient) AS line,
           concat(v.cp, v.commune, v.raw_invalid::text, v.sexe, v.mode_entree, v.provenance, v.transport,
                  v.transport_pec, v.motif, v.gravite, v.dp, array_to_string(v.da, ''),
                  array_to_string(v.actes, ''), v.mode_sortie, v.destination, v.orient) AS vals,
           v.entry_date, v.id
    FROM visit v
    WHERE v.etab = %(etab)s AND v.entry_date BETWEEN %(start)s AND %(end)s
      AND NOT EXISTS (SELECT 1 FROM quality_quarantine q WHERE q.file_id = v.file_id AND q.released_at IS NULL)
) x
ORDER BY x.entry_date, x.id
