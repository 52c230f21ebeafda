"""DAG factories, one module per kind of DAG, each `build_<kind>(region)` bound to one region.

Not a DAG file itself (listed in dags/.airflowignore): dags/rpu_regions.py imports the factories and calls
them for every region file. The dags folder is on sys.path in every Airflow process.
"""
