"""The `<region>_intake` DAG end to end with dag.test(): real SFTP server, real PostgreSQL."""
from __future__ import annotations

import json
import threading
import time

import pytest

from support.regions import write_region
from support.rpu_xml import rpu_file, visit

GOOD = "990000127"         # CH de Valbourg
OTHER = "990000135"        # CH de Saint-Aurèle
CHU_ADULTES = "990000101"  # shares the EJ 990000010 with the paediatric site


def _visits(n: int, day: str = "01/11/2026") -> list[dict]:
    return [visit(ENTREE=f"{day} {10 + i % 10:02d}:{i % 60:02d}", SORTIE=f"{day} {20 + i % 3:02d}:00")
            for i in range(n)]


def _run(env, dag_id="demo_intake"):
    dag = env.dag(dag_id)
    run = dag.test()
    return run


def _tis(run):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(ti.task_id, ti.map_index, ti.rendered_map_index, ti.state)
                for ti in session.query(TaskInstance).filter(TaskInstance.run_id == run.run_id,
                                                             TaskInstance.dag_id == run.dag_id)]


def test_intake_accepts_rejects_acknowledges_and_archives(intake_env):
    env = intake_env
    env.drop(GOOD, "RPU_good.xml", rpu_file(_visits(5) + [visit(ENTREE="")], finess=GOOD))
    env.drop(OTHER, "RPU_broken.xml", rpu_file(_visits(2), finess=OTHER)[:-40])
    env.drop(OTHER, "RPU_not_mine.xml", rpu_file(_visits(2), finess=GOOD))
    env.drop(CHU_ADULTES, "RPU_ej.xml", rpu_file(_visits(3, "31/10/2026"), finess="990000010"))
    env.drop(GOOD, "RPU_later.xml.part", b"<OSCOUR>")  # still being uploaded

    run = _run(env)
    assert run.state == "success"

    rows = env.sql("SELECT file_name, status, sender, etab, visits_loaded, visits_rejected, errors "
                   "FROM received_file ORDER BY file_name")
    by_name = {r[0]: r for r in rows}
    assert set(by_name) == {"RPU_good.xml", "RPU_broken.xml", "RPU_not_mine.xml", "RPU_ej.xml"}
    assert by_name["RPU_good.xml"][1:6] == ("accepted", GOOD, GOOD, 5, 1)
    assert by_name["RPU_ej.xml"][1:5] == ("accepted", CHU_ADULTES, CHU_ADULTES, 3)
    assert by_name["RPU_broken.xml"][1] == "rejected"
    assert by_name["RPU_broken.xml"][6][0]["rule"] == "NOT_WELL_FORMED"
    assert by_name["RPU_not_mine.xml"][1] == "rejected"
    assert by_name["RPU_not_mine.xml"][6][0]["rule"] == "FINESS_NOT_SENDER"
    assert env.sql("SELECT etab, count(*) FROM visit GROUP BY etab ORDER BY etab") == [(CHU_ADULTES, 3), (GOOD, 5)]
    assert env.sql("SELECT rule, idx FROM rejected_visit") == [("ENTREE_MISSING", 6)]

    root = env.sftp_root
    assert sorted(p.name for p in (root / GOOD / "inbox").iterdir()) == ["RPU_later.xml.part"]
    assert not list((root / OTHER / "inbox").iterdir())
    assert (root / GOOD / "archive" / "RPU_good.xml").exists()
    assert sorted(p.name for p in (root / OTHER / "rejected").iterdir()) == ["RPU_broken.xml", "RPU_not_mine.xml"]
    receipt = (root / GOOD / "ack" / "RPU_good.xml.ack.txt").read_text(encoding="utf-8")
    assert "ACCEPTÉ" in receipt and "5 enregistrés, 1 rejetés" in receipt and "ENTREE_MISSING" in receipt
    rejected = json.loads((root / OTHER / "ack" / "RPU_not_mine.xml.ack.json").read_text(encoding="utf-8"))
    assert rejected["status"] == "rejected" and rejected["errors"][0]["rule"] == "FINESS_NOT_SENDER"
    assert "REJETÉ" in (root / OTHER / "ack" / "RPU_broken.xml.ack.txt").read_text(encoding="utf-8")
    # the raw files are kept locally too
    archived = sorted(p.name for p in env.data_dir.rglob("RPU_*.xml"))
    assert archived == ["RPU_broken.xml", "RPU_ej.xml", "RPU_good.xml", "RPU_not_mine.xml"]
    # ops see each chunk of files as a mapped task named after the establishment and file of each
    [label] = [t[2] for t in _tis(run) if t[0] == "ingest"]
    assert f"{GOOD} · RPU_good.xml" in label and f"{OTHER} · RPU_broken.xml" in label

    # nothing new: a second run does nothing
    assert _run(env).state == "success"
    assert env.sql("SELECT count(*) FROM received_file") == [(4,)]


def test_same_content_again_is_a_duplicate_and_changes_nothing(intake_env):
    env = intake_env
    data = rpu_file(_visits(4), finess=GOOD)
    env.drop(GOOD, "RPU_1.xml", data)
    assert _run(env).state == "success"
    first = env.sql("SELECT id, file_id FROM visit ORDER BY id")
    env.drop(GOOD, "RPU_1_resent.xml", data)
    assert _run(env).state == "success"
    assert env.sql("SELECT status, duplicate_of IS NOT NULL FROM received_file WHERE file_name = 'RPU_1_resent.xml'") \
        == [("duplicate", True)]
    assert env.sql("SELECT id, file_id FROM visit ORDER BY id") == first
    receipt = (env.sftp_root / GOOD / "ack" / "RPU_1_resent.xml.ack.txt").read_text(encoding="utf-8")
    assert "DÉJÀ REÇU" in receipt and "RPU_1.xml" in receipt
    assert (env.sftp_root / GOOD / "archive" / "RPU_1_resent.xml").exists()


def test_sftp_outage_fails_the_run_keeps_the_file_and_a_rerun_completes(intake_env):
    env = intake_env
    env.drop(GOOD, "RPU_1.xml", rpu_file(_visits(2), finess=GOOD))
    env.sftp_server.pause()
    try:
        run = _run(env)
    finally:
        env.sftp_server.resume()
    assert run.state == "failed"
    assert (env.sftp_root / GOOD / "inbox" / "RPU_1.xml").exists()
    assert env.sql("SELECT count(*) FROM received_file") == [(0,)]
    assert _run(env).state == "success"
    assert env.sql("SELECT status, visits_loaded FROM received_file") == [("accepted", 2)]
    assert not (env.sftp_root / GOOD / "inbox" / "RPU_1.xml").exists()


def test_database_outage_keeps_the_file_in_the_inbox(intake_env, monkeypatch):
    env = intake_env
    env.drop(GOOD, "RPU_1.xml", rpu_file(_visits(2), finess=GOOD))
    monkeypatch.setenv("AIRFLOW_CONN_RPU_DEMO_DB", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "schema": "nowhere"}))
    assert _run(env).state == "failed"
    assert (env.sftp_root / GOOD / "inbox" / "RPU_1.xml").exists()
    assert not (env.sftp_root / GOOD / "ack").exists() or not list((env.sftp_root / GOOD / "ack").iterdir())


def test_rerun_after_commit_completes_delivery_without_loading_twice(intake_env):
    """The load commits, then the move out of the inbox fails: the next run finishes the job, once."""
    from rpu import intake, sftp
    from rpu.connections import db_url

    env = intake_env
    region = env.region()
    env.drop(GOOD, "RPU_1.xml", rpu_file(_visits(3), finess=GOOD))

    class MoveFails(sftp.Remote):
        def move_into(self, path, directory, name=None):
            raise OSError("connection lost")

    with sftp.open_remote(region.sftp_intake_conn_id) as remote:
        [item] = intake.list_new_files(region, remote)
        with pytest.raises(OSError, match="connection lost"):
            intake.ingest_remote_file(region, item, MoveFails(remote.client), db_url(region.db_conn_id))
    assert env.sql("SELECT status FROM received_file") == [("accepted",)]
    assert (env.sftp_root / GOOD / "inbox" / "RPU_1.xml").exists()

    assert _run(env).state == "success"
    assert env.sql("SELECT status, visits_loaded FROM received_file") == [("accepted", 3)]
    assert env.sql("SELECT count(*) FROM visit") == [(3,)]
    assert "ACCEPTÉ" in (env.sftp_root / GOOD / "ack" / "RPU_1.xml.ack.txt").read_text(encoding="utf-8")
    assert not (env.sftp_root / GOOD / "inbox" / "RPU_1.xml").exists()


def test_a_file_still_growing_is_left_for_the_next_run(intake_env):
    from rpu import intake, sftp

    env = intake_env
    region = env.region().adjusted(intake={"stable_seconds": 1.0})
    env.drop(GOOD, "RPU_done.xml", rpu_file(_visits(1), finess=GOOD))
    growing = env.drop(GOOD, "RPU_growing.xml", b"<OSCOUR>")
    stop = threading.Event()

    def write_more():
        while not stop.is_set():
            with open(growing, "ab") as fh:
                fh.write(b" " * 100)
            time.sleep(0.1)

    writer = threading.Thread(target=write_more)
    writer.start()
    try:
        with sftp.open_remote(region.sftp_intake_conn_id) as remote:
            items = intake.list_new_files(region, remote)
    finally:
        stop.set()
        writer.join()
    assert [i["name"] for i in items] == ["RPU_done.xml"]


def test_a_hung_transfer_is_cut_by_the_task_timeout(intake_env, monkeypatch, capfd):
    """An SFTP server that accepts the connection, says hello and then never answers: the task is failed by its
    execution_timeout (timeouts.intake.task_minutes) instead of hanging and blocking every later run."""
    import socket

    env = intake_env
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def hang():
        while True:
            try:
                s, _ = listener.accept()
            except OSError:
                return
            s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")      # a banner, then silence
            held.append(s)

    threading.Thread(target=hang, daemon=True).start()
    conn = json.loads(env.sftp_server.airflow_conn_json(env.username, env.password))
    monkeypatch.setenv("AIRFLOW_CONN_RPU_DEMO_SFTP_INTAKE", json.dumps({**conn, "port": listener.getsockname()[1],
                                                                        "extra": {**conn.get("extra", {}),
                                                                                  "conn_timeout": "600"}}))
    write_region(env.region_dir, retries=0, timeouts={"intake": {"task_minutes": 0.05}})     # 3 s
    t0 = time.monotonic()
    try:
        run = _run(env)
    finally:
        listener.close()
        for s in held:
            s.close()
    assert run.state == "failed" and time.monotonic() - t0 < 60
    assert ("list_new_files", -1, None, "failed") in _tis(run)
    assert "AirflowTaskTimeout" in "".join(capfd.readouterr())
