"""Provisioning a region, then its establishments (`rpu region add`, `rpu establishment add`: rpu.cli.provision),
one module per thing provisioned: `regionfile` (input checks, the region file edited in place), `database`
(PostgreSQL role and database), `sftptree` (the establishments' SFTP directories), `connections` (Airflow
connections); `errors` says what refuses (exit 2) and what fails (exit 1).

The commands, their options and the order of the steps: rpu.cli.provision. Every step is idempotent: a rerun
with the same arguments changes nothing and completes whatever an interrupted run left undone. See
docs/provisioning.md.

Secrets: the role's password is random, sent to PostgreSQL only as a SCRAM-SHA-256 verifier computed here
(the clear password never reaches the server, its logs or a file) and printed once. No Airflow import at module
level (only for `--sftp-admin CONN_ID`, through the SFTP provider's hook).
"""
