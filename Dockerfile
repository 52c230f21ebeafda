# The concentrator's Airflow image: the official Apache Airflow image of the version in the lock file, plus
# the project's locked requirements and its domain package. Build: docker compose build
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

USER airflow
WORKDIR /opt/airflow/project
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml ./
COPY --chown=airflow:root include ./include
# The lock file pins every package; Airflow itself stays the image's version (the same as the lock's).
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt \
 && pip install --no-cache-dir --no-deps -e .
ENV RPU_DATA_DIR=/opt/airflow/data \
    RPU_REGIONS_DIR=/opt/airflow/project/config/regions
WORKDIR /opt/airflow
