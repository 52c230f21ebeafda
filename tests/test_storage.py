"""rpu.storage: the archive and the outbox in shared storage (a local path, or a URL through Airflow's
ObjectStoragePath: file://, and s3:// on a real S3-compatible server with the Amazon provider's file system),
a task's scratch on its worker's disk; a send retried on another worker sends the bytes prepared by the first
try, never a rebuilt file (the same on the CeleryExecutor: test_scaleout.py)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

import paramiko
import pytest

from rpu import config, intake, sends, storage
from rpu.exports import FileSpec
from support.airflow_env import scratch_airflow_home
from support.rpu_xml import rpu_file, visit
from support.sftp_session import Account

scratch_airflow_home()   # ObjectStoragePath reads Airflow's configuration

ETAB = "990000127"
SPEC = FileSpec("invs", "daily", ETAB, 0, date(2026, 10, 26), date(2026, 11, 1), "RPU_990000127_test.xml")


class Shared:
    """The shared storage of a test: a plain local path, the same place as a file:// URL, or a bucket of the
    S3-compatible server (s3://, the connection `rpu_storage` pointing at it)."""

    def __init__(self, kind: str, tmp_path: Path, request, monkeypatch):
        self.kind = kind
        if kind == "s3":
            self.s3 = request.getfixturevalue("s3_server")
            self.bucket = self.s3.create_bucket(f"rpu-{uuid.uuid4().hex[:12]}")
            monkeypatch.setenv(f"AIRFLOW_CONN_{storage.CONN_ID.upper()}", self.s3.airflow_conn_json())
            self.root = f"s3://{self.bucket}/shared"
        else:
            self.dir = tmp_path / "shared"
            self.dir.mkdir()
            self.root = self.dir if kind == "path" else f"file://{self.dir}"

    def files(self, *under: str) -> dict[str, bytes]:
        """{path under the root: bytes} of every file stored under root/under…, read past rpu.storage."""
        if self.kind == "s3":
            prefix = "/".join(("shared", *under)) + "/"
            return {k.removeprefix("shared/"): v for k, v in self.s3.objects(self.bucket, prefix).items()}
        return {str(p.relative_to(self.dir)): p.read_bytes() for p in self.dir.joinpath(*under).rglob("*")
                if p.is_file()}


@pytest.fixture(params=["path", "url", "s3"])
def shared(request, tmp_path, monkeypatch) -> Shared:
    return Shared(request.param, tmp_path, request, monkeypatch)


def test_the_storage_root_is_the_data_dir_unless_a_url_or_path_is_set(monkeypatch, tmp_path):
    monkeypatch.delenv("RPU_REGIONS_DIR", raising=False)
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RPU_STORAGE_URL", raising=False)
    r = config.get_region("demo")
    assert (r.archive_dir, r.outbox_dir) == (tmp_path / "data" / "archive" / "demo",
                                             tmp_path / "data" / "outbox" / "demo")
    monkeypatch.setenv("RPU_STORAGE_URL", "s3://rpu-bucket/concentrator/")
    r = config.get_region("demo")
    assert (r.archive_dir, r.outbox_dir) == ("s3://rpu-bucket/concentrator/archive/demo",
                                             "s3://rpu-bucket/concentrator/outbox/demo")
    monkeypatch.setenv("RPU_STORAGE_URL", str(tmp_path / "nfs"))
    assert config.get_region("demo").archive_dir == tmp_path / "nfs" / "archive" / "demo"
    assert intake.work_root(r) == tmp_path / "data" / "work" / "demo"   # scratch stays on this worker


@pytest.mark.parametrize("kind", ["url", "s3"])
def test_a_url_location_stores_reads_and_ages_out_whole_files(kind, tmp_path, request, monkeypatch):
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "data"))
    shared = Shared(kind, tmp_path, request, monkeypatch)
    root = shared.root
    loc = storage.join(root, "archive", "x", "f.xml")
    assert loc == f"{root}/archive/x/f.xml"
    src = tmp_path / "src.xml"
    src.write_bytes(b"<RPU/>" * 1000)
    storage.put_file(src, loc)
    assert storage.exists(loc) and storage.size(loc) == 6000
    assert not storage.exists(storage.join(root, "archive", "x", "g.xml"))
    assert storage.sha256(loc) == hashlib.sha256(src.read_bytes()).hexdigest()
    with storage.local_copy(loc, storage.sha256(loc)) as local:
        assert local.read_bytes() == src.read_bytes() and str(local).startswith(str(tmp_path / "data" / "scratch"))
    assert not list((tmp_path / "data" / "scratch").iterdir())       # the scratch copy is gone
    with pytest.raises(ValueError):
        with storage.local_copy(loc, "0" * 64):
            pass
    with storage.staged(storage.join(root, "outbox", "b.xml")) as tmp:
        tmp.write_bytes(b"built")
    storage.write_bytes(storage.join(root, "outbox", "m.json"), b"{}")
    assert shared.files() == {"archive/x/f.xml": src.read_bytes(), "outbox/b.xml": b"built", "outbox/m.json": b"{}"}
    archive = storage.join(root, "archive")
    assert storage.apply_retention(archive, 30) == 0                  # written today: kept
    assert storage.apply_retention(archive, 30, today=date.today() + timedelta(days=31)) == 1
    assert shared.files() == {"outbox/b.xml": b"built", "outbox/m.json": b"{}"}


def test_the_raw_file_is_archived_in_the_shared_storage(shared, db, region, tmp_path, monkeypatch):
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "worker"))
    region = dataclasses.replace(region, archive_dir=storage.join(shared.root, "archive", "demo"))
    path = tmp_path / "in.xml"
    path.write_bytes(rpu_file([visit()]))
    assert intake.ingest_path(region, db, path, sender=ETAB)["status"] == "accepted"
    [(archived, content)] = shared.files("archive", "demo", ETAB).items()
    assert content == path.read_bytes() and archived.rsplit("/", 1)[-1] == "in.xml"
    with sends.store.connection(db) as conn:
        [(recorded,)] = conn.execute("SELECT archive_path FROM received_file").fetchall()
    assert recorded == str(storage.join(shared.root, *archived.split("/")))
    assert storage.sha256(storage.location(recorded)) == hashlib.sha256(content).hexdigest()
    assert not (tmp_path / "worker" / "archive").exists()   # nothing kept on the worker's own disk


def test_a_send_retried_on_another_worker_sends_the_bytes_of_the_first_try(shared, db, region, tmp_path,
                                                                           monkeypatch, sftp_server):
    """Two workers: each its own local scratch (RPU_DATA_DIR), one shared storage. The first fails to upload
    after preparing; data arrive meanwhile (a rebuild would differ); its disk is then wiped; the second
    sends the file of the first try, as recorded in the ledger."""
    region = dataclasses.replace(region, archive_dir=storage.join(shared.root, "archive", "demo"),
                                 outbox_dir=storage.join(shared.root, "outbox", "demo"))
    worker_a, worker_b = tmp_path / "worker-a", tmp_path / "worker-b"
    monkeypatch.setenv("RPU_DATA_DIR", str(worker_a))
    first_in = tmp_path / "in1.xml"
    first_in.write_bytes(rpu_file([visit(), visit(ENTREE="30/10/2026 08:00", SORTIE="30/10/2026 09:00")]))
    assert intake.ingest_path(region, db, first_in, sender=ETAB)["status"] == "accepted"
    account = Account(sftp_server, tmp_path / "invs")
    try:
        with pytest.raises(paramiko.AuthenticationException):
            sends.send(region, SPEC, "run1", db, lambda: account.open(password="wrong"))
        [first] = sends.ledger(db)
        assert (first["status"], first["visits"]) == ("failed", 2)
        built = [c for k, c in shared.files("outbox", "demo").items() if k.endswith(SPEC.file_name)]
        assert [hashlib.sha256(c).hexdigest() for c in built] == [first["sha256"]]   # in the shared storage

        later_in = tmp_path / "in2.xml"   # a third visit, stored after the first try built its file
        later_in.write_bytes(rpu_file([visit(), visit(ENTREE="30/10/2026 08:00", SORTIE="30/10/2026 09:00"),
                                       visit(ENTREE="31/10/2026 10:00", SORTIE="31/10/2026 11:00")]))
        assert intake.ingest_path(region, db, later_in, sender=ETAB)["status"] == "accepted"
        shutil.rmtree(worker_a, ignore_errors=True)   # the first worker is gone, with its local disk

        monkeypatch.setenv("RPU_DATA_DIR", str(worker_b))
        out = sends.send(region, SPEC, "run1", db, account.open)
        received = (account.root / SPEC.file_name).read_bytes()
        assert (out["status"], out["attempts"], out["sha256"]) == ("sent", 2, first["sha256"])
        assert hashlib.sha256(received).hexdigest() == first["sha256"]
        assert received.count(b"<PATIENT>") == 2                   # the first try's file, not a rebuild
        assert [r["status"] for r in sends.ledger(db)] == ["sent"]
        assert not worker_a.exists()
        assert not [p for p in worker_b.rglob("*") if p.is_file()]   # its scratch copy is gone
        # a new run builds from what is stored now
        new = sends.send(region, SPEC, "run2", db, account.open)
        assert new["visits"] == 3 and new["sha256"] != first["sha256"]
    finally:
        account.remove()
