"""Hostile inboxes and bad days through the `<region>_intake` DAG (dag.test()) and the intake's SFTP side: real
SFTP server, real PostgreSQL. Every entry is judged on its own, every file of every establishment still goes."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from support.regions import write_region
from support.rpu_xml import rpu_file, visit

GOOD = "990000127"         # CH de Valbourg
OTHER = "990000135"        # CH de Saint-Aurèle
CHU = "990000101"          # CHU, adult site


def _visits(n: int, day: str = "01/11/2026", **items) -> list[dict]:
    return [visit(ENTREE=f"{day} {10 + i % 10:02d}:{i % 60:02d}", SORTIE=f"{day} {20 + i % 3:02d}:00", **items)
            for i in range(n)]


def _file(finess: str, n: int = 2, extract: str = "02/11/2026 03:10:00", **kw) -> bytes:
    return rpu_file(_visits(n), finess=finess, extract=extract, **kw)


def _statuses(env) -> dict[str, tuple]:
    rows = env.sql("SELECT file_name, status, errors, sha256 IS NULL FROM received_file")
    return {name: (status, [e["rule"] for e in errors], unread) for name, status, errors, unread in rows}


def _inbox(env, finess) -> list[str]:
    d = env.sftp_root / finess / "inbox"
    return sorted(os.fsdecode(p) for p in os.listdir(os.fsencode(d))) if d.exists() else []


# --- 1 and 4: every entry judged on its own -------------------------------------------------------------------

LATIN1_NAME = b"RPU_r\xe9sum\xe9.xml"          # written by a Latin-1 client: not UTF-8
LONG = {n: "RPU_" + "x" * (n - 8) + ".xml" for n in (201, 234, 255)}


def test_odd_entries_are_refused_alone_and_every_other_file_goes_in_the_same_run(intake_env):
    from rpu import intake

    env = intake_env
    env.drop(GOOD, "RPU_good.xml", _file(GOOD, 3))
    other = env.drop(OTHER, "RPU_other.xml", _file(OTHER, 2))
    env.drop(CHU, "RPU_chu.xml", _file(CHU, 4))
    inbox = env.sftp_root / GOOD / "inbox"
    with open(os.fsencode(inbox) + b"/" + LATIN1_NAME, "wb") as fh:
        fh.write(_file(GOOD, 1, extract="02/11/2026 04:00:00"))
    os.symlink(other, inbox / "RPU_link.xml")             # another establishment's pending file
    (inbox / "old").mkdir()
    (inbox / "old" / "RPU_inside.xml").write_bytes(_file(GOOD, 1))
    for n, name in LONG.items():
        env.drop(GOOD, name, _file(GOOD, 1, extract=f"02/11/2026 05:{n % 60:02d}:00"))
    env.drop(GOOD, "RPU_ordre.xml", _file(GOOD, 2, extract="02/11/2026 06:00:00", ordre="40000"))

    run = env.dag("demo_intake").test()
    assert run.state == "success"

    got = _statuses(env)
    assert got["RPU_good.xml"][0] == got["RPU_other.xml"][0] == got["RPU_chu.xml"][0] == "accepted"
    latin1 = intake.safe_name(LATIN1_NAME)
    assert latin1 == "RPU_r%E9sum%E9.xml"
    assert got[latin1] == ("rejected", ["NAME_INVALID"], True)
    assert got["RPU_link.xml"] == ("rejected", ["NOT_A_FILE"], True)
    assert got["old"] == ("rejected", ["NOT_A_FILE"], True)
    for name in LONG.values():
        assert got[intake.safe_name(name.encode())] == ("rejected", ["NAME_TOO_LONG"], True)
    assert got["RPU_ordre.xml"][:2] == ("rejected", ["ORDRE_OUT_OF_RANGE"])
    assert env.sql("SELECT etab, count(*) FROM visit GROUP BY etab ORDER BY etab") == [(CHU, 4), (GOOD, 3),
                                                                                       (OTHER, 2)]
    # every entry left its inbox, with a receipt under a name that can be written
    assert _inbox(env, GOOD) == _inbox(env, OTHER) == _inbox(env, CHU) == []
    ack, rejected = env.sftp_root / GOOD / "ack", env.sftp_root / GOOD / "rejected"
    for name in [latin1, "RPU_link.xml", "old", "RPU_ordre.xml"] + [intake.safe_name(n.encode()) for n in LONG.values()]:
        assert len(name.encode()) <= intake.MAX_NAME_BYTES
        text = (ack / f"{name}.ack.txt").read_text(encoding="utf-8")
        assert "REJETÉ" in text, name
        assert json.loads((ack / f"{name}.ack.json").read_text(encoding="utf-8"))["status"] == "rejected"
        assert (rejected / name).exists() or (rejected / name).is_symlink(), name
    assert (rejected / "RPU_link.xml").is_symlink() and (rejected / "old" / "RPU_inside.xml").exists()
    assert (env.sftp_root / OTHER / "archive" / "RPU_other.xml").exists()

    assert env.dag("demo_intake").test().state == "success"     # nothing left, nothing twice
    assert len(env.sql("SELECT id FROM received_file")) == len(got)


def test_a_symlink_swapped_in_after_the_listing_is_never_read_through(intake_env):
    from rpu import intake, sftp
    from rpu.connections import db_url

    env = intake_env
    region = env.region()
    mine = env.drop(GOOD, "RPU_mine.xml", _file(GOOD, 3))
    theirs = env.drop(OTHER, "RPU_theirs.xml", _file(OTHER, 2))
    with sftp.open_remote(region.sftp_intake_conn_id) as remote:
        items = {i["name"]: i for i in intake.list_new_files(region, remote)}
        mine.unlink()
        os.symlink(theirs, mine)            # swapped between the listing and the download
        r = [intake.ingest_remote_file(region, items[name], remote, db_url(region.db_conn_id))
             for name in ("RPU_mine.xml", "RPU_theirs.xml")]
    assert [(x["file"], x["status"]) for x in r] == [("RPU_mine.xml", "rejected"), ("RPU_theirs.xml", "accepted")]
    got = _statuses(env)
    assert got["RPU_mine.xml"] == ("rejected", ["NOT_A_FILE"], True)       # never read
    assert got["RPU_theirs.xml"] == ("accepted", [], False)                # loaded, not a "duplicate"
    assert env.sql("SELECT etab, count(*) FROM visit GROUP BY etab") == [(OTHER, 2)]
    assert (env.sftp_root / GOOD / "rejected" / "RPU_mine.xml").is_symlink()


def test_a_file_over_the_size_limit_is_refused_before_download_and_loads_once_the_limit_is_raised(intake_env):
    env = intake_env
    write_region(env.region_dir, intake={"stable_seconds": 0, "max_file_mb": 1})
    data = _file(GOOD, 2500)
    assert len(data) > 1024 * 1024
    env.drop(GOOD, "RPU_big.xml", data)
    assert env.dag("demo_intake").test().state == "success"
    assert _statuses(env) == {"RPU_big.xml": ("rejected", ["FILE_TOO_LARGE"], True)}   # never downloaded
    assert not list(env.data_dir.rglob("RPU_big.xml*"))                                 # nor archived
    assert "REJETÉ" in (env.sftp_root / GOOD / "ack" / "RPU_big.xml.ack.txt").read_text(encoding="utf-8")
    assert _inbox(env, GOOD) == []

    write_region(env.region_dir, intake={"stable_seconds": 0, "max_file_mb": 8})
    env.drop(GOOD, "RPU_big.xml", data)
    assert env.dag("demo_intake").test().state == "success"
    assert env.sql("SELECT status, visits_loaded FROM received_file ORDER BY id") == [("rejected", 0),
                                                                                     ("accepted", 2500)]


# --- 5: no patient value in any log ------------------------------------------------------------------------------

SECRETS = {"COMMUNE": "Zanzibar-Ouest-4217", "MOTIF": "Vertige-Saturnien-88", "HMED": "Secret-Regional-5123",
           "REFUSED": "Atlantide-du-Nord-9931", "DEFECT": "Lemurie-Basse-6604"}


def test_task_logs_hold_no_patient_value(intake_env, monkeypatch, capfd, caplog):
    import logging

    import psycopg

    from rpu import checks

    caplog.set_level(logging.DEBUG)
    env = intake_env
    with psycopg.connect(env.db_url) as conn:   # a constraint of the database this content breaks
        conn.execute(f"ALTER TABLE visit ADD CONSTRAINT refused_by_the_dba CHECK (commune <> '{SECRETS['REFUSED']}')")
    real = checks.check_visit

    def defect(raw, start, end):     # a defect of the checks on one content, quoting the value as code does
        if raw.items.get("COMMUNE") == SECRETS["DEFECT"]:
            raise ValueError(f"unexpected {raw.items['COMMUNE']!r}")
        return real(raw, start, end)

    monkeypatch.setattr(checks, "check_visit", defect)
    good = rpu_file(_visits(3, COMMUNE=SECRETS["COMMUNE"], MOTIF=SECRETS["MOTIF"]), finess=GOOD).replace(
        b"</ORIENT></PATIENT>", f"</ORIENT><HMED>{SECRETS['HMED']}</HMED></PATIENT>".encode())
    env.drop(GOOD, "RPU_good.xml", good)
    env.drop(OTHER, "RPU_refused.xml", rpu_file(_visits(2, COMMUNE=SECRETS["REFUSED"]), finess=OTHER))
    env.drop(CHU, "RPU_defect.xml", rpu_file(_visits(2, COMMUNE=SECRETS["DEFECT"]), finess=CHU))
    env.drop(GOOD, "RPU_bad_entree.xml", rpu_file(_visits(1) + [visit(ENTREE=SECRETS["COMMUNE"])], finess=GOOD,
                                                   extract="02/11/2026 04:00:00"))

    run = env.dag("demo_intake").test()
    logs = "".join(capfd.readouterr()) + caplog.text
    leaked = [value for value in SECRETS.values() if value in logs]
    assert leaked == []                                              # never the visits' values…
    assert "SQLSTATE 23514" in logs and "CHECK_FAILED" in logs     # …but what and where, for the operators
    assert f"{GOOD} · RPU_good.xml: accepted" in logs                # (the scan did see the task logs)
    assert run.state == "success"
    got = _statuses(env)
    assert got["RPU_refused.xml"][:2] == ("rejected", ["DATABASE_REFUSED"])
    assert got["RPU_defect.xml"][:2] == ("rejected", ["CHECK_FAILED"])
    assert got["RPU_good.xml"][0] == got["RPU_bad_entree.xml"][0] == "accepted"
    xcoms = json.dumps(_xcoms(run))
    assert "RPU_good.xml" in xcoms and not any(v in xcoms for v in SECRETS.values())


def _xcoms(run) -> list:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [x.value for x in session.query(XComModel).filter(XComModel.run_id == run.run_id,
                                                                XComModel.dag_id == run.dag_id)]


# --- 6: a backlog of any size ------------------------------------------------------------------------------------

def test_a_backlog_of_more_than_1024_files_is_ingested_in_one_run(intake_env, capfd, caplog):
    import logging

    from rpu import intake

    caplog.set_level(logging.INFO, logger="rpu.intake")
    env = intake_env
    # chunks of 50 files: 22 task instances, the suite's time goes to the files, not to Airflow's bookkeeping
    write_region(env.region_dir, intake={"stable_seconds": 0, "chunk_files": 50})
    region = env.region()
    etabs = [e.finess for e in region.establishments][:11]
    n = 0
    for k, finess in enumerate(etabs):
        for i in range(100):        # 1,100 files, e.g. 80 establishments × 14 days after an outage
            env.drop(finess, f"RPU_{finess}_{i:03d}.xml",
                     rpu_file([], finess=finess, extract=f"{1 + i % 28:02d}/10/2026 {i // 28:02d}:{k:02d}:00",
                              debut="", fin=""))
            n += 1
    assert n > 1024
    run = env.dag("demo_intake").test()
    assert run.state == "success"
    assert env.sql("SELECT status, count(*) FROM received_file GROUP BY status") == [("accepted", n)]
    assert all(_inbox(env, f) == [] for f in etabs)
    labels = _map_labels(run)
    assert len(labels) == -(-n // 50) and all(len(label) <= 250 for label in labels)
    assert all(label.endswith(f"(+{50 - label.count(' · ')})") for label in labels)   # named, then counted
    logs = "".join(capfd.readouterr()) + caplog.text     # (where the log goes depends on earlier dag.test runs)
    missing = [f"{f} · RPU_{f}_{i:03d}.xml" for f in etabs for i in range(100)
               if f"{f} · RPU_{f}_{i:03d}.xml: ingest" not in logs]
    assert missing == []                                   # the task log names every file of its chunk
    # a backlog past chunk_files × max_map_length gets larger chunks rather than too many
    items = [{"finess": GOOD, "name": f"f{i}.xml"} for i in range(region.intake.chunk_files * 1024 + 1)]
    chunks = intake.chunks(region, items)
    assert len(chunks) <= 1024 and sum(len(c["files"]) for c in chunks) == len(items)


def _map_labels(run) -> list[str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return [ti.rendered_map_index for ti in session.query(TaskInstance).filter(
            TaskInstance.run_id == run.run_id, TaskInstance.dag_id == run.dag_id, TaskInstance.task_id == "ingest")]


# --- 8: one receipt per file, private files, leftovers of killed tasks ----------------------------------------------

def test_two_concurrent_ingests_of_one_file_load_it_once_with_one_receipt(intake_env):
    from rpu import intake, sftp
    from rpu.connections import db_url

    env = intake_env
    region = env.region()
    env.drop(GOOD, "RPU_1.xml", _file(GOOD, 3000))
    with sftp.open_remote(region.sftp_intake_conn_id) as remote:
        [item] = intake.list_new_files(region, remote)
    start = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            with sftp.open_remote(region.sftp_intake_conn_id) as remote:
                start.wait()
                results.append(intake.ingest_remote_file(region, item, remote, db_url(region.db_conn_id)))
        except Exception as exc:   # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["accepted", "skipped"]
    assert env.sql("SELECT status, visits_loaded FROM received_file") == [("accepted", 3000)]
    receipt = (env.sftp_root / GOOD / "ack" / "RPU_1.xml.ack.txt").read_text(encoding="utf-8")
    assert "ACCEPTÉ" in receipt and "doublon" not in receipt
    assert sorted(p.name for p in (env.sftp_root / GOOD / "ack").iterdir()) == ["RPU_1.xml.ack.json",
                                                                                "RPU_1.xml.ack.txt"]
    assert _inbox(env, GOOD) == [] and (env.sftp_root / GOOD / "archive" / "RPU_1.xml").exists()


KILLED_INGEST = textwrap.dedent("""
    import sys
    from rpu import intake, sftp
    from rpu.config import load_region
    from rpu.connections import db_url
    from rpu import loader

    def stop(*a, **k):
        print("downloaded", flush=True)
        sys.stdin.read()              # wait here, the download in work/, until killed
    loader.load_file = stop
    region = load_region(sys.argv[1])
    with sftp.open_remote(region.sftp_intake_conn_id) as remote:
        for item in intake.list_new_files(region, remote):
            intake.ingest_remote_file(region, item, remote, db_url(region.db_conn_id))
""")


def test_a_killed_ingest_leaves_its_file_in_the_inbox_and_nothing_in_work(intake_env):
    from rpu import intake

    env = intake_env
    region = env.region()
    env.drop(GOOD, "RPU_1.xml", _file(GOOD, 5))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(env.region_dir / "demo.yaml")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        lines = iter(proc.stdout.readline, "")
        assert any(line.strip() == "downloaded" for line in lines)      # (after the SFTP client's log lines)
        work = intake.work_root(region)
        left = [p for p in work.rglob("*RPU_1.xml")]
        assert left and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in left)
        assert stat.S_IMODE(left[0].parent.stat().st_mode) == 0o700
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    assert _inbox(env, GOOD) == ["RPU_1.xml"]
    assert env.dag("demo_intake").test().state == "success"
    assert env.sql("SELECT status FROM received_file") == [("accepted",)]
    assert not [p for p in work.rglob("*") if p.is_file()]             # the leftover is gone
    archived = next(env.data_dir.rglob("RPU_1.xml"))
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    assert stat.S_IMODE(archived.parent.stat().st_mode) == 0o700
