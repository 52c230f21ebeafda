"""The ATIH side (Syrius platform): receive every region's cumulative files, count them, show the national page,
reconcile them with each region's send ledger.

Plain Python, no Airflow import at module level; it uses the core of the package (parse, config, store, sftp,
files, outbox, mail) and nothing imports it but the CLI, the `syrius_reception` DAG and the dashboard.

    settings        the national settings (config/national.yaml, optional) and the drop directories
    schema          the national database: migrations (include/sql/national) and named queries
    reception       drop directory → checks → national database → archive/ or rejected/ + receipt
    report          the national page (region × month grid, drill-down), table / CSV / JSON
    reconciliation  each region's ATIH sends (its ledger) against what was received; mailed once
    commands        `rpu syrius receive`, `rpu report national|reconciliation`, `rpu db migrate --national`
"""
