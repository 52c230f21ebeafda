"""Shared pytest fixtures: real local PostgreSQL, SFTP, SMTP and S3-compatible services."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import sys

import pytest

from rpu_dev.localservices import PostgresServer, S3Server, SftpServer, SmtpSink

# Airflow's DAG processor puts the DAG bundle (dags/) on sys.path so DAG files can import rpu_dags; the
# DagBags the tests build do not: do it once here.
DAGS_DIR = str(Path(__file__).resolve().parents[1] / "dags")
if DAGS_DIR not in sys.path:
    sys.path.insert(0, DAGS_DIR)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A running throw-away PostgreSQL cluster for the whole session."""
    # Not tmp_path_factory: pytest resets /tmp/pytest-of-<user> to 0700 whenever a session
    # starts, which would lock the postgres user out of a cluster another session is using.
    base = Path(tempfile.mkdtemp(prefix="rpu-test-pg-"))
    server = PostgresServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_db(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a brand-new, uniquely named database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def db(fresh_db: str) -> str:
    """A fresh database with the concentrator's schema applied."""
    from rpu import store

    store.migrate(fresh_db)
    return fresh_db


@pytest.fixture
def region(tmp_path):
    """The demo region, archiving into the test's temp dir."""
    import dataclasses

    from rpu.config import get_region

    return dataclasses.replace(get_region("demo"), archive_dir=tmp_path / "archive")


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    """A running SFTP server with no accounts yet (tests call add_user with their own chroot)."""
    with SftpServer(tmp_path_factory.mktemp("sftp")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running S3-compatible server (moto's, in a process of its own); tests create their own bucket."""
    with S3Server(tmp_path_factory.mktemp("s3") / "s3.log") as server:
        yield server


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """A running SMTP sink; tests should clear() it or filter by recipient."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp(smtp_sink, region, monkeypatch):
    """The SMTP sink as the region's SMTP connection (AIRFLOW_CONN_*), emptied before and after."""
    smtp_sink.clear()
    monkeypatch.setenv(f"AIRFLOW_CONN_{region.smtp_conn_id.upper()}", smtp_sink.airflow_conn_json())
    yield smtp_sink
    smtp_sink.clear()


@pytest.fixture
def national_db(pg_server):
    """A fresh database with the national schema."""
    from rpu.national import schema  # only the national tests need it

    name = f"national_{uuid.uuid4().hex[:10]}"
    url = pg_server.create_database(name)
    try:
        assert schema.migrate(url) == ["001_national.sql"]
        yield url
    finally:
        pg_server.drop_database(name)
