-- The batch the rpu_visit suite validates, as a view Great Expectations reads for the time of one quality gate:
-- the visits stored from one received file, one row per visit, with the columns the expectations name
-- (rpu.quality.BATCH_COLUMNS, in that order). `rpu validate --quality` computes the same columns in Python
-- (rpu.quality.batch_values); tests/test_quality.py proves both agree on the same file. Empty items are NULL.
--   naissance, sortie     filled: the date, or the value as written when unreadable (completeness)
--   *_invalid             the unreadable value as written, else NULL
--   age                   whole years at entry, -1 when born after the entry day
--   <mode>_<item>         '<mode>/<value>' when both are filled (coherence of entry and exit blocks)
--   dp, da                CIM-10 as checked: upper case, no dot, no space; da and actes: the codes joined with
--                         chr(1), NULL when there is none
--   duree_min             SORTIE − ENTREE in minutes
-- The same view serves the gate of a whole intake run (rpu_quality.run_<backend pid>: the batches of every file the
-- gate judges, with the file's id first, as rpu_file_id) and the look at one file's batch (rpu_quality.batch_<file
-- id>, without it). {view}, {file_id_column} and {file_ids} (integers) are written into the text by
-- rpu.quality.batch.batch_view_sql: a view has no parameters.
CREATE OR REPLACE VIEW rpu_quality.{view} AS
SELECT {file_id_column}v.cp, v.commune,
       coalesce(v.naissance::text, v.raw_invalid ->> 'NAISSANCE') AS naissance,
       v.raw_invalid ->> 'NAISSANCE' AS naissance_invalid,
       CASE WHEN v.naissance > v.entry_date THEN -1
            ELSE date_part('year', age(v.entry_date::timestamp, v.naissance::timestamp))::integer END AS age,
       v.sexe, v.mode_entree, v.provenance, v.mode_entree || '/' || v.provenance AS mode_entree_provenance,
       v.transport, v.transport_pec, v.motif, v.gravite,
       upper(replace(replace(v.dp, '.', ''), ' ', '')) AS dp,
       CASE WHEN cardinality(v.da) > 0
            THEN upper(replace(replace(array_to_string(v.da, chr(1)), '.', ''), ' ', '')) END AS da,
       CASE WHEN cardinality(v.actes) > 0 THEN array_to_string(v.actes, chr(1)) END AS actes,
       coalesce(v.sortie::text, v.raw_invalid ->> 'SORTIE') AS sortie,
       v.raw_invalid ->> 'SORTIE' AS sortie_invalid,
       date_part('epoch', v.sortie - v.entree) / 60 AS duree_min,
       v.mode_sortie, v.destination, v.mode_sortie || '/' || v.destination AS mode_sortie_destination,
       v.orient, v.mode_sortie || '/' || v.orient AS mode_sortie_orient
FROM visit v
WHERE v.file_id = ANY (ARRAY[{file_ids}]::bigint[]);
