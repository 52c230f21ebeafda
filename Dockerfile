# The concentrator's Airflow image: the official Apache Airflow image of the version in the lock file, plus
# the project's locked runtime requirements (no test tool), its domain package (installed, not editable), its
# DAGs, plugin and region files, and an entrypoint that checks the secrets before Airflow starts.
# Build: docker compose build
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_UID=50000

USER airflow
WORKDIR /opt/airflow/project
COPY --chown=airflow:root requirements.lock pyproject.toml setup.py ./
COPY --chown=airflow:root include ./include
# The runtime lock pins every package with its file's sha256 (no test tool in it); Airflow itself stays the image's
# version (the same as the lock's). The package is built as a wheel (SQL, XSD, suites, templates inside it).
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --no-deps .
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root config ./config
COPY --chown=root:root --chmod=0755 deploy/entrypoint.sh deploy/airflow-init.sh /opt/airflow/project/deploy/

# The data directory (archive, outbox, work files when RPU_STORAGE_URL is local) exists in the image, owned by the
# user the containers run as: a new named volume mounted there takes this ownership (never root's).
USER root
RUN mkdir -p /opt/airflow/data /opt/airflow/logs \
 && chown -R "${AIRFLOW_UID}:0" /opt/airflow/data /opt/airflow/logs \
 && chmod -R 0770 /opt/airflow/data
USER airflow

ENV RPU_DATA_DIR=/opt/airflow/data \
    RPU_PROJECT_DIR=/opt/airflow/project \
    RPU_REGIONS_DIR=/opt/airflow/project/config/regions
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/airflow/project/deploy/entrypoint.sh"]
CMD []
