"""Helpers shared by the tests (tests/ is on sys.path: pyproject's pytest `pythonpath`), imported as
`from support.<module> import ...` — never from a conftest.py, whose module name pytest does not make unique.

- `rpu_xml`: small RPU 2006 files built item by item;
- `exported`: what each export query and count would send for one establishment and period;
- `seeding`: files loaded for real and dated back as if received on a past day (the watch tests);
- `regions`: region files for the tests (a shipped file with test-friendly settings; regions provisioned by
  `rpu region add`) and the DAG folder that goes with them;
- `sftp_session`: an account of the suite's SFTP server and an rpu.sftp.Remote on it (paramiko, host key pinned);
- `dag_runs`: dag.test() of a DAG with a trigger form, its failed runs read back failed;
- `airflow_env`: a scratch AIRFLOW_HOME for the tests outside tests/dags that reach Airflow's SMTP hook.
"""
