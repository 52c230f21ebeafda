"""A scratch AIRFLOW_HOME for the tests outside tests/dags that reach Airflow's hooks (SMTP, SFTP) through
connections given as AIRFLOW_CONN_* variables: Airflow reads its configuration once, at its first import, so
this must run before anything imports it (tests/dags/conftest.py does the same for the DAG tests)."""
from __future__ import annotations

import os
import sys
import tempfile


def scratch_airflow_home() -> None:
    """Point Airflow at a throw-away home unless it is already imported (then its home is already chosen)."""
    if "airflow" not in sys.modules:
        os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="rpu-test-airflow-"))
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
