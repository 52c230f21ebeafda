-- bench/export.py only: copy the seed establishment's visits to `etab` until it has n visits, entry dates
-- shifted by whole days over 2025 (the ATIH year of the benchmark).
INSERT INTO visit (file_id, etab, ordre, idx, line, entry_date, cp, commune, naissance, sexe, entree, mode_entree,
                   provenance, transport, transport_pec, motif, gravite, dp, da, actes, sortie, mode_sortie,
                   destination, orient, extra, raw_invalid, flags)
SELECT v.file_id, %(etab)s, v.ordre, v.idx, v.line,
       date '2025-01-01' + ((v.entry_date - date '2025-01-01' + k::integer * 7) %% 365),
       v.cp, v.commune, v.naissance, v.sexe,
       v.entree + make_interval(days => (date '2025-01-01' + ((v.entry_date - date '2025-01-01' + k::integer * 7) %% 365))
                                        - v.entry_date),
       v.mode_entree, v.provenance, v.transport, v.transport_pec, v.motif, v.gravite, v.dp, v.da, v.actes,
       v.sortie + make_interval(days => (date '2025-01-01' + ((v.entry_date - date '2025-01-01' + k::integer * 7) %% 365))
                                        - v.entry_date),
       v.mode_sortie, v.destination, v.orient, v.extra, v.raw_invalid, v.flags
FROM generate_series(0, %(n)s / (SELECT count(*) FROM visit WHERE etab = %(src)s)) AS k
CROSS JOIN LATERAL (SELECT * FROM visit WHERE etab = %(src)s ORDER BY id) v
LIMIT %(n)s;
