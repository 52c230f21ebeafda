"""Provisioning a region, then its establishments (`rpu region add`, `rpu establishment add`: rpu.cli.provision),
one module per thing provisioned: `regionfile` (input checks, the region file edited in place), `database`
(PostgreSQL role and database), `sftptree` (the establishments' SFTP directories), `connections` (Airflow
connections); `errors` says what refuses (exit 2) and what fails (exit 1).


    rpu region add --code CODE --name NAME --timezone TZ [--establishments FILE.csv] [--old-concentrator]
                   [--admin-db URL] [--db-host HOST[:PORT]] [--rotate-password]
                   [--sftp-admin CONN_ID_OR_URL] [--regions-dir DIR] [--dags-dir DIR] [--create-connections]
    rpu establishment add --region CODE --finess F --name N [--finess-ej E] [--status active|shadow]
                   [--contact EMAIL] [--update] [--sftp-admin CONN_ID_OR_URL] [--regions-dir DIR]

Everything is checked before anything changes (exit 2 and every problem listed, nothing created); then the
servers are reached (exit 1 when one cannot be, still nothing created); then, in this order: the PostgreSQL
role and database (schema applied by the admin with `rpu.store.migrate`, least-privilege grants), the SFTP
tree, the region file, the region's DAG file, and the Airflow connections (printed, or created with
`--create-connections`). Every step is idempotent: a rerun with the same arguments changes nothing and
completes whatever an interrupted run left undone. See docs/provisioning.md.

Secrets: the role's password is random, sent to PostgreSQL only as a SCRAM-SHA-256 verifier computed here
(the clear password never reaches the server, its logs or a file) and printed once. No Airflow import at module
level (only for `--sftp-admin CONN_ID`, through the SFTP provider's hook).
"""
