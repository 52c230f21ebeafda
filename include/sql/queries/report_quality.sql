-- `rpu report quality`: completeness and "exploitabilité" (FEDORU) of every RPU item per establishment, over
-- the visits entered in [start, end]. One parallel pass over the visits; PostgreSQL aggregates (the region line
-- is the sum of these rows: every figure is a count). For each item of rpu_format.ITEMS (lower case):
--   <item>_den     visits on which the item is measured (the FEDORU denominator)
--   <item>_filled  … on which it is filled                          → completeness = filled / den
--   <item>_valid   … on which it is filled and valid                → exploitabilité = valid / den
-- Denominators: every visit, except DESTINATION and ORIENT (hospitalised visits only, MODE_SORTIE 6/7) and DP
-- (visits whose ORIENT is not FUGUE, SCAM, PSA or REO: patients gone without being seen or against advice).
-- "Valid": in the value domain, in the format, and without the quality flag that makes it unusable.
-- The `d` row repeats rpu_format's domains and formats: tests/test_reports.py proves they are equal. (Not
-- MATERIALIZED: inlined, its values are constants, and the scan can run in parallel.)
-- Parameters: start, end.
WITH d AS (
    SELECT '{M,F,I}'::text[]                               AS sexe,
           '{6,7,8}'::text[]                               AS mode_entree,
           '{1,2,3,4,5,6,7,8}'::text[]                     AS provenance,
           '{PERSO,AMBU,VSAB,SMUR,HELI,FO}'::text[]        AS transport,
           '{MED,PARAMED,AUCUN}'::text[]                   AS transport_pec,
           '{1,P,2,3,4,5,D}'::text[]                       AS gravite,
           '{6,7,8,9}'::text[]                             AS mode_sortie,
           '{6,7}'::text[]                                 AS mode_sortie_hospitalised,
           '{1,2,3,4}'::text[]                             AS destination_hospitalised,
           '{HDT,HO,SC,SI,REA,UHCD,MED,CHIR,OBST}'::text[] AS orient_hospitalised,
           '{FUGUE,SCAM,PSA,REO}'::text[]                  AS orient_home,
           '^[0-9][0-9AB][0-9]{3}$'::text                  AS cp_re,
           '^[A-Z][0-9]{2}[0-9A-Z+]{0,4}$'::text           AS cim10_re
), pv AS (
    SELECT v.etab,
           cardinality(v.flags) > 0                                               AS flagged,
           coalesce(v.mode_sortie = ANY (d.mode_sortie_hospitalised), false)      AS hospitalised,
           coalesce(v.orient, '') <> ALL (d.orient_home)                          AS dp_expected,
           nullif(v.cp, '') IS NOT NULL                                           AS cp_f,
           coalesce(v.cp ~ d.cp_re, false)                                        AS cp_ok,
           nullif(v.commune, '') IS NOT NULL                                      AS commune_f,
           v.naissance IS NOT NULL OR v.raw_invalid -> 'NAISSANCE' IS NOT NULL    AS naissance_f,
           v.naissance IS NOT NULL AND NOT ('AGE_RANGE' = ANY (v.flags))          AS naissance_ok,
           nullif(v.sexe, '') IS NOT NULL                                         AS sexe_f,
           coalesce(v.sexe = ANY (d.sexe), false)                                 AS sexe_ok,
           v.entree IS NOT NULL                                                   AS entree_f,
           nullif(v.mode_entree, '') IS NOT NULL                                  AS mode_entree_f,
           coalesce(v.mode_entree = ANY (d.mode_entree), false)                   AS mode_entree_ok,
           nullif(v.provenance, '') IS NOT NULL                                   AS provenance_f,
           coalesce(v.provenance = ANY (d.provenance), false)
               AND NOT ('PROVENANCE_INCOHERENT' = ANY (v.flags))                  AS provenance_ok,
           nullif(v.transport, '') IS NOT NULL                                    AS transport_f,
           coalesce(v.transport = ANY (d.transport), false)                       AS transport_ok,
           nullif(v.transport_pec, '') IS NOT NULL                                AS transport_pec_f,
           coalesce(v.transport_pec = ANY (d.transport_pec), false)               AS transport_pec_ok,
           nullif(v.motif, '') IS NOT NULL                                        AS motif_f,
           nullif(v.gravite, '') IS NOT NULL                                      AS gravite_f,
           coalesce(v.gravite = ANY (d.gravite), false)                           AS gravite_ok,
           nullif(v.dp, '') IS NOT NULL                                           AS dp_f,
           coalesce(upper(replace(replace(v.dp, '.', ''), ' ', '')) ~ d.cim10_re, false) AS dp_ok,
           cardinality(v.da) > 0                                                  AS liste_da_f,
           cardinality(v.da) > 0 AND NOT ('DA_FORMAT' = ANY (v.flags))            AS liste_da_ok,
           cardinality(v.actes) > 0                                               AS liste_actes_f,
           cardinality(v.actes) > 0 AND NOT ('ACTE_FORMAT' = ANY (v.flags))       AS liste_actes_ok,
           v.sortie IS NOT NULL OR v.raw_invalid -> 'SORTIE' IS NOT NULL          AS sortie_f,
           v.sortie IS NOT NULL
               AND NOT (v.flags && '{DURATION_NEGATIVE,DURATION_TOO_LONG}'::text[]) AS sortie_ok,
           nullif(v.mode_sortie, '') IS NOT NULL                                  AS mode_sortie_f,
           coalesce(v.mode_sortie = ANY (d.mode_sortie), false)                   AS mode_sortie_ok,
           nullif(v.destination, '') IS NOT NULL                                  AS destination_f,
           coalesce(v.destination = ANY (d.destination_hospitalised), false)      AS destination_ok,
           nullif(v.orient, '') IS NOT NULL                                       AS orient_f,
           coalesce(v.orient = ANY (d.orient_hospitalised), false)                AS orient_ok
    FROM visit v
    CROSS JOIN d
    WHERE v.entry_date BETWEEN %(start)s::date AND %(end)s::date
)
SELECT etab,
       count(*) AS visits,
       count(*) FILTER (WHERE flagged) AS flagged,
       count(*) AS cp_den, count(*) FILTER (WHERE cp_f) AS cp_filled, count(*) FILTER (WHERE cp_ok) AS cp_valid,
       count(*) AS commune_den, count(*) FILTER (WHERE commune_f) AS commune_filled,
           count(*) FILTER (WHERE commune_f) AS commune_valid,
       count(*) AS naissance_den, count(*) FILTER (WHERE naissance_f) AS naissance_filled,
           count(*) FILTER (WHERE naissance_ok) AS naissance_valid,
       count(*) AS sexe_den, count(*) FILTER (WHERE sexe_f) AS sexe_filled,
           count(*) FILTER (WHERE sexe_ok) AS sexe_valid,
       count(*) AS entree_den, count(*) FILTER (WHERE entree_f) AS entree_filled,
           count(*) FILTER (WHERE entree_f) AS entree_valid,
       count(*) AS mode_entree_den, count(*) FILTER (WHERE mode_entree_f) AS mode_entree_filled,
           count(*) FILTER (WHERE mode_entree_ok) AS mode_entree_valid,
       count(*) AS provenance_den, count(*) FILTER (WHERE provenance_f) AS provenance_filled,
           count(*) FILTER (WHERE provenance_ok) AS provenance_valid,
       count(*) AS transport_den, count(*) FILTER (WHERE transport_f) AS transport_filled,
           count(*) FILTER (WHERE transport_ok) AS transport_valid,
       count(*) AS transport_pec_den, count(*) FILTER (WHERE transport_pec_f) AS transport_pec_filled,
           count(*) FILTER (WHERE transport_pec_ok) AS transport_pec_valid,
       count(*) AS motif_den, count(*) FILTER (WHERE motif_f) AS motif_filled,
           count(*) FILTER (WHERE motif_f) AS motif_valid,
       count(*) AS gravite_den, count(*) FILTER (WHERE gravite_f) AS gravite_filled,
           count(*) FILTER (WHERE gravite_ok) AS gravite_valid,
       count(*) FILTER (WHERE dp_expected) AS dp_den, count(*) FILTER (WHERE dp_expected AND dp_f) AS dp_filled,
           count(*) FILTER (WHERE dp_expected AND dp_ok) AS dp_valid,
       count(*) AS liste_da_den, count(*) FILTER (WHERE liste_da_f) AS liste_da_filled,
           count(*) FILTER (WHERE liste_da_ok) AS liste_da_valid,
       count(*) AS liste_actes_den, count(*) FILTER (WHERE liste_actes_f) AS liste_actes_filled,
           count(*) FILTER (WHERE liste_actes_ok) AS liste_actes_valid,
       count(*) AS sortie_den, count(*) FILTER (WHERE sortie_f) AS sortie_filled,
           count(*) FILTER (WHERE sortie_ok) AS sortie_valid,
       count(*) AS mode_sortie_den, count(*) FILTER (WHERE mode_sortie_f) AS mode_sortie_filled,
           count(*) FILTER (WHERE mode_sortie_ok) AS mode_sortie_valid,
       count(*) FILTER (WHERE hospitalised) AS destination_den,
           count(*) FILTER (WHERE hospitalised AND destination_f) AS destination_filled,
           count(*) FILTER (WHERE hospitalised AND destination_ok) AS destination_valid,
       count(*) FILTER (WHERE hospitalised) AS orient_den,
           count(*) FILTER (WHERE hospitalised AND orient_f) AS orient_filled,
           count(*) FILTER (WHERE hospitalised AND orient_ok) AS orient_valid
FROM pv
GROUP BY etab
ORDER BY etab;
