-- Second half of cancel-and-replace (after replace_period.sql): the applied days lose their old visits and
-- get the file's; rejected visits are kept with their reason. Parameters: file_id, etab, ordre, applied.
DELETE FROM visit WHERE etab = %(etab)s AND ordre = %(ordre)s AND entry_date = ANY(%(applied)s::date[]);

INSERT INTO visit (file_id, etab, ordre, idx, line, entry_date, cp, commune, naissance, sexe, entree, mode_entree,
                   provenance, transport, transport_pec, motif, gravite, dp, da, actes, sortie, mode_sortie,
                   destination, orient, extra, raw_invalid, flags)
SELECT %(file_id)s, %(etab)s, %(ordre)s, idx, line, entry_date, cp, commune, naissance, sexe, entree, mode_entree,
       provenance, transport, transport_pec, motif, gravite, dp, da, actes, sortie, mode_sortie,
       destination, orient, extra, raw_invalid, flags
FROM stage
WHERE reject_rule IS NULL AND entry_date = ANY(%(applied)s::date[]);

INSERT INTO rejected_visit (file_id, idx, line, rule, message, raw)
SELECT %(file_id)s, idx, line, reject_rule, reject_message, raw FROM stage WHERE reject_rule IS NOT NULL;
