-- bench/export.py only: copy the seed establishment's visits to `etab` until it has n visits, entry dates
-- shifted by whole days over 2025 (the ATIH year of the benchmark). Rows are written day after day, as a
-- concentrator's nightly loads write them (each file's days in one transaction, in file order), so that the
-- table's physical order is that of production: one day of an establishment in a few runs of pages.
INSERT INTO visit (file_id, etab, ordre, idx, line, entry_date, cp, commune, naissance, sexe, entree, mode_entree,
                   provenance, transport, transport_pec, motif, gravite, dp, da, actes, sortie, mode_sortie,
                   destination, orient, extra, raw_invalid, flags)
SELECT x.file_id, %(etab)s, x.ordre, x.idx, x.line, x.day, x.cp, x.commune, x.naissance, x.sexe,
       x.entree + make_interval(days => x.day - x.entry_date), x.mode_entree, x.provenance, x.transport,
       x.transport_pec, x.motif, x.gravite, x.dp, x.da, x.actes,
       x.sortie + make_interval(days => x.day - x.entry_date), x.mode_sortie, x.destination, x.orient, x.extra,
       x.raw_invalid, x.flags
FROM (
    SELECT v.*, k, date '2025-01-01' + ((v.entry_date - date '2025-01-01' + k::integer * 7) %% 365) AS day
    FROM generate_series(0, %(n)s / (SELECT count(*) FROM visit WHERE etab = %(src)s)) AS k
    CROSS JOIN LATERAL (SELECT * FROM visit WHERE etab = %(src)s) v
    ORDER BY k, v.id
    LIMIT %(n)s
) x
ORDER BY x.day, x.k, x.id;
