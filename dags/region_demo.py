"""Airflow DAGs of region 'demo', from config/regions/demo.yaml (file written by `rpu region add`)."""
from rpu_dags import build_region

build_region(__file__, globals())
