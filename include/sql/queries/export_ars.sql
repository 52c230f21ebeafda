-- ARS flat export: one row per visit of the period, all establishments (or one); DA and ACTES joined with ',';
-- AGE in years at entry and DUREE_MIN derived. {identifying} adds COMMUNE and NAISSANCE when the region asks.
-- ORDRE tells apart the FINESS_ordre of one establishment (e.g. two emergency units). Held-back batches
-- (view held_back_file) are left out, as in every export.
SELECT etab AS "FINESS", ordre AS "ORDRE", cp AS "CP", {identifying} rpu_age(naissance, entry_date) AS "AGE",
       sexe AS "SEXE", to_char(entree, 'YYYY-MM-DD HH24:MI') AS "ENTREE", mode_entree AS "MODE_ENTREE",
       provenance AS "PROVENANCE", transport AS "TRANSPORT", transport_pec AS "TRANSPORT_PEC",
       motif AS "MOTIF", gravite AS "GRAVITE", dp AS "DP", nullif(array_to_string(da, ','), '') AS "LISTE_DA",
       nullif(array_to_string(actes, ','), '') AS "LISTE_ACTES", to_char(sortie, 'YYYY-MM-DD HH24:MI') AS "SORTIE",
       mode_sortie AS "MODE_SORTIE", destination AS "DESTINATION", orient AS "ORIENT",
       (extract(epoch FROM sortie - entree) / 60)::integer AS "DUREE_MIN"
FROM exportable_visit visit
WHERE entry_date BETWEEN %(start)s AND %(end)s AND (%(etab)s::text IS NULL OR etab = %(etab)s)
ORDER BY etab, ordre, entree, file_id, idx
