"""Hostile input and bad days, on the real PostgreSQL: the period bound, the duplicate rule, poison contents,
what the database refuses, the quality gate's window, private local files, work leftovers, archive retention.
The inbox side (names, symlinks, backlog, concurrent ingests, task logs) is in tests/dags/test_intake_hostile_dag.py."""
from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date

import psycopg
import pytest

from rpu import exports, faults, files, intake, sends, store
from rpu.quality import gx, release
from rpu import rpu_format as F
from support.exported import everywhere, exported
from support.rpu_xml import rpu_file, visit

ETAB = "990000127"     # CH de Valbourg
OTHER = "990000135"    # CH de Saint-Aurèle


def q(db, sql, *params):
    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def put(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def day_visits(day: str, n: int, **items) -> list[dict]:
    """n visits entering on `day` (JJ/MM/AAAA)."""
    return [visit(ENTREE=f"{day} {8 + i % 12:02d}:{i % 60:02d}", SORTIE=f"{day} 21:00", **items) for i in range(n)]


def days_stored(db, etab=ETAB) -> set[date]:
    return {r[0] for r in q(db, "SELECT DISTINCT entry_date FROM visit WHERE etab = %s", etab)}


# --- 2. the declared period is bounded --------------------------------------------------------------------------

def test_one_visit_declaring_thirty_years_does_not_erase_the_history(db, region, tmp_path):
    history = {"01/03/2019": "01/03/2019", "15/06/2021": "15/06/2021", "10/01/2024": "10/01/2024",
               "20/10/2026": "20/10/2026", "01/11/2026": "01/11/2026"}
    for i, day in enumerate(history):
        r = intake.ingest_path(region, db, put(tmp_path, f"h{i}.xml", rpu_file(
            day_visits(day, 3), debut=day, fin=day, extract=f"{day} 23:00:00")), sender=ETAB)
        assert r["status"] == "accepted"
    before = days_stored(db)
    assert len(before) == 5

    attack = rpu_file([visit(ENTREE="01/11/2026 10:00", SORTIE="01/11/2026 11:00")], debut="01/01/2000",
                      fin="31/12/2030", extract="02/11/2026 03:00:00")
    r = intake.ingest_path(region, db, put(tmp_path, "attack.xml", attack), sender=ETAB)

    assert r["status"] == "accepted"
    # the file replaces only the days within 31 days of its visit; the years before survive
    assert (r["period_start"], r["period_end"]) == ("2026-10-01", "2026-12-02")
    assert days_stored(db) == before - {date(2026, 10, 20)}
    assert q(db, "SELECT count(*) FROM visit WHERE entry_date = '2026-11-01'") == [(1,)]
    assert q(db, "SELECT min(day), max(day) FROM day_source WHERE file_id = %s", r["file_id"]) \
        == [(date(2026, 10, 1), date(2026, 12, 2))]
    [warning] = [w for w in r["warnings"] if w["rule"] == "PERIOD_BOUNDED"]
    assert "01/01/2000 – 30/09/2026" in warning["message"] and "03/12/2026 – 31/12/2030" in warning["message"]
    assert "[PERIOD_BOUNDED]" in intake.receipt_text(r)


def test_the_margin_is_a_region_key_and_a_file_without_visit_is_bounded_by_its_extract(db, region, tmp_path):
    narrow = region.adjusted(intake={"period_margin_days": 2})
    intake.ingest_path(narrow, db, put(tmp_path, "h.xml", rpu_file(
        day_visits("20/10/2026", 2) + day_visits("01/11/2026", 2), debut="20/10/2026", fin="01/11/2026",
        extract="02/11/2026 03:00:00")), sender=ETAB)
    r = intake.ingest_path(narrow, db, put(tmp_path, "empty.xml", rpu_file(
        [], debut="01/01/2026", fin="02/11/2026", extract="03/11/2026 03:00:00")), sender=ETAB)
    assert r["status"] == "accepted" and (r["period_start"], r["period_end"]) == ("2026-11-01", "2026-11-02")
    assert days_stored(db) == {date(2026, 10, 20)}
    assert {w["rule"] for w in r["warnings"]} == {"NO_VISIT", "PERIOD_BOUNDED"}


# --- 3. duplicates are duplicates of an accepted file of the same sender ----------------------------------------

def test_a_file_refused_for_its_context_loads_once_sent_again_correctly(db, region, tmp_path):
    data = rpu_file(day_visits("01/11/2026", 4), finess=ETAB)
    path = put(tmp_path, "f.xml", data)
    # dropped in a sibling's inbox: refused there, loaded from its own inbox
    wrong = intake.ingest_path(region, db, path, sender=OTHER)
    assert wrong["status"] == "rejected" and wrong["errors"][0]["rule"] == "FINESS_NOT_SENDER"
    right = intake.ingest_path(region, db, path, sender=ETAB)
    assert right["status"] == "accepted" and right["visits_loaded"] == 4
    # the same bytes from the same sender again: that one is a duplicate
    again = intake.ingest_path(region, db, path, sender=ETAB)
    assert again["status"] == "duplicate" and again["duplicate_of"] == right["file_id"]
    # and from another sender it is judged, not a duplicate of someone else's file
    assert intake.ingest_path(region, db, path, sender=OTHER)["errors"][0]["rule"] == "FINESS_NOT_SENDER"

    # FINESS not declared yet in the region file, declared since
    late = "990000150"
    undeclared = dataclasses.replace(region, establishments=tuple(e for e in region.establishments
                                                                  if e.finess != late))
    assert late in {e.finess for e in region.establishments}
    path = put(tmp_path, "late.xml", rpu_file(day_visits("01/11/2026", 2), finess=late))
    first = intake.ingest_path(undeclared, db, path)
    assert first["status"] == "rejected" and first["errors"][0]["rule"] == "FINESS_UNKNOWN"
    assert intake.ingest_path(region, db, path)["status"] == "accepted"

    # over the size limit, limit raised since
    path = put(tmp_path, "big.xml", rpu_file(day_visits("02/11/2026", 3), finess=ETAB, debut="02/11/2026",
                                             fin="02/11/2026", extract="03/11/2026 03:00:00"))
    small = region.adjusted(intake={"max_file_bytes": 100})
    assert intake.ingest_path(small, db, path, sender=ETAB)["errors"][0]["rule"] == "FILE_TOO_LARGE"
    assert intake.ingest_path(region, db, path, sender=ETAB)["status"] == "accepted"


# --- 4. poison contents end in a rejection, never in an exception -----------------------------------------------

def test_an_ordre_the_database_cannot_hold_is_a_rejection(db, region, tmp_path):
    r = intake.ingest_path(region, db, put(tmp_path, "o.xml", rpu_file(day_visits("01/11/2026", 2), ordre="40000")),
                           sender=ETAB)
    assert r["status"] == "rejected" and [e["rule"] for e in r["errors"]] == ["ORDRE_OUT_OF_RANGE"]
    assert q(db, "SELECT count(*) FROM visit") == [(0,)]


def test_a_single_visit_of_a_hundred_megabytes_is_refused_while_streaming(db, region, tmp_path):
    """The parse stops at the bound: nothing of the visit is built whole, nothing reaches PostgreSQL."""
    path = tmp_path / "huge.xml"
    head, tail = rpu_file([visit()]).split(b"</PATIENT>")
    chunk = b"<L>" + b"x" * 9_990 + b"</L>\n"
    with open(path, "wb") as fh:
        fh.write(head + b"<DOSSIER>")
        for _ in range(10_000):          # 100 MB in one regional element of one visit
            fh.write(chunk)
        fh.write(b"</DOSSIER></PATIENT>" + tail)
    r = intake.ingest_path(region, db, path, sender=ETAB)
    assert r["status"] == "rejected"
    [e] = r["errors"]
    assert e["rule"] == "VISIT_TOO_LARGE" and e["visit"] == 1
    assert e["line"] < 100    # judged within the first few hundred KB of the file
    assert q(db, "SELECT count(*) FROM visit") == [(0,)]


def test_a_regional_element_too_long_rejects_its_visit_alone(db, region, tmp_path):
    limit = 1000     # rpu_format.MAX_ITEM_CHARS, the XSD's bound of a known item
    data = rpu_file(day_visits("01/11/2026", 2)).replace(
        b"</ORIENT></PATIENT>", b"</ORIENT><HMED>" + b"9" * (limit + 5) + b"</HMED></PATIENT>", 1)
    r = intake.ingest_path(region, db, put(tmp_path, "long.xml", data), sender=ETAB)
    assert r["status"] == "accepted" and (r["visits_loaded"], r["visits_rejected"]) == (1, 1)
    [(rule, raw)] = q(db, "SELECT rule, raw FROM rejected_visit")
    assert rule == "ITEM_TOO_LONG" and len(raw["HMED"]) == limit == F.MAX_ITEM_CHARS


PATIENT_VALUE = "Zanzibar-Ouest-4217"


def test_a_value_the_database_refuses_rejects_the_file_with_its_sqlstate_not_its_value(db, region, tmp_path,
                                                                                       caplog, capfd):
    # a constraint of the database (here added by the test) that this content breaks: PostgreSQL's message
    # would quote the whole row ("Failing row contains (…)")
    with psycopg.connect(db) as conn:
        conn.execute(f"ALTER TABLE visit ADD CONSTRAINT refused_by_the_dba CHECK (commune <> '{PATIENT_VALUE}')")
    data = rpu_file(day_visits("01/11/2026", 2) + day_visits("01/11/2026", 1, COMMUNE=PATIENT_VALUE))
    r = intake.ingest_path(region, db, put(tmp_path, "refused.xml", data), sender=ETAB)

    assert r["status"] == "rejected" and [e["rule"] for e in r["errors"]] == ["DATABASE_REFUSED"]
    assert "SQLSTATE 23514" in r["errors"][0]["message"]
    assert q(db, "SELECT count(*) FROM visit") == [(0,)]
    told = intake.receipt_text(r) + repr(r) + caplog.text + "".join(capfd.readouterr())
    assert "23514" in caplog.text and PATIENT_VALUE not in told


def test_a_check_failing_on_a_content_rejects_the_file_without_quoting_it(db, region, tmp_path, monkeypatch,
                                                                          caplog):
    from rpu import checks

    real = checks.check_visit

    def defect(raw, start, end):
        if raw.items.get("COMMUNE") == PATIENT_VALUE:
            raise ValueError(f"cannot handle {raw.items['COMMUNE']}")
        return real(raw, start, end)

    monkeypatch.setattr(checks, "check_visit", defect)
    data = rpu_file(day_visits("01/11/2026", 1) + day_visits("01/11/2026", 1, COMMUNE=PATIENT_VALUE))
    r = intake.ingest_path(region, db, put(tmp_path, "defect.xml", data), sender=ETAB)
    assert r["status"] == "rejected" and [e["rule"] for e in r["errors"]] == ["CHECK_FAILED"]
    assert q(db, "SELECT count(*) FROM visit") == [(0,)]
    assert "CHECK_FAILED" in caplog.text and PATIENT_VALUE not in caplog.text


def test_a_database_error_is_told_by_sqlstate_and_place(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (n smallint, d date)")
        with pytest.raises(psycopg.Error) as info:
            with conn.cursor().copy("COPY t (n, d) FROM STDIN") as copy:
                copy.write(b"1\t2026-11-01\n2\tZanzibar\n")
    text = faults.describe_db_error(info.value, "load")
    assert "Zanzibar" in str(info.value)     # what PostgreSQL says…
    assert text == "SQLSTATE 22007 (InvalidDatetimeFormat) in load, COPY row 2, column d"   # …and what we tell


def test_a_database_outage_is_a_fault_of_ours_told_without_its_content(region, tmp_path):
    with pytest.raises(faults.DatabaseFault, match="connection"):
        intake.ingest_path(region, "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
                           put(tmp_path, "f.xml", rpu_file(day_visits("01/11/2026", 1))), sender=ETAB)


# --- 7. a send never exports a batch whose gate has not run, or held it ------------------------------------------

def test_a_send_between_the_load_and_its_gate_does_not_export_the_batch(db, region, tmp_path, monkeypatch):
    held = region.adjusted(quality={"blocking": ("SEXE_DOMAIN",)})
    bad = day_visits("01/11/2026", 6)
    bad[0]["SEXE"] = "X"
    path = put(tmp_path, "f.xml", rpu_file(bad))
    in_gate, sent = threading.Event(), threading.Event()
    real = gx.visit_suite_per_file                 # the gate judges the run's batches at once

    def slow_gate(*args, **kwargs):
        in_gate.set()                      # the load has committed, the gate is reading the batch…
        assert sent.wait(30)               # …while a send exports
        return real(*args, **kwargs)

    monkeypatch.setattr(gx, "visit_suite_per_file", slow_gate)
    result = {}
    ingest = threading.Thread(target=lambda: result.update(intake.ingest_path(held, db, path, sender=ETAB)))
    ingest.start()
    try:
        assert in_gate.wait(60)
        assert q(db, "SELECT count(*) FROM visit") == [(6,)]     # committed
        during = exported(db, ETAB)
    finally:
        sent.set()
        ingest.join(60)
    assert during == everywhere(0)
    assert result["quality"]["quarantined"] and exported(db, ETAB) == everywhere(0)     # held by the gate
    with store.connection(db) as conn:
        release.release(conn, result["file_id"], by="test")
    assert exported(db, ETAB) == everywhere(6)


def test_a_batch_whose_gate_never_ran_waits_for_it(db, region, tmp_path):
    """A crash between the load's commit and the gate: nothing is exported until a rerun runs the gate."""
    path = put(tmp_path, "f.xml", rpu_file(day_visits("01/11/2026", 5)))
    r = intake.ingest_path(region, db, path, sender=ETAB, remote_path="x/inbox/f.xml", quality_gate=False)
    assert r["status"] == "accepted" and r["visits_loaded"] == 5
    assert exported(db, ETAB) == everywhere(0)
    assert q(db, "SELECT gate_pending FROM received_file") == [(True,)]
    r = intake.ingest_path(region, db, path, sender=ETAB, remote_path="x/inbox/f.xml")
    assert r["quality"]["status"] == "passed" and exported(db, ETAB) == everywhere(5)


# --- 8. private local files, work leftovers, archive retention ----------------------------------------------------

def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_archive_and_outbox_files_are_private(db, region, tmp_path):
    region = dataclasses.replace(region, outbox_dir=tmp_path / "outbox")
    r = intake.ingest_path(region, db, put(tmp_path, "f.xml", rpu_file(day_visits("01/11/2026", 2))), sender=ETAB)
    [archived] = q(db, "SELECT archive_path FROM received_file WHERE id = %s", r["file_id"])[0]
    assert _mode(archived) == 0o600
    for d in (os.path.dirname(archived), region.archive_dir / ETAB):
        assert _mode(d) == 0o700, d
    with store.connection(db) as conn:
        [spec] = exports.invs_specs(conn, region, date(2026, 11, 2), etabs=[ETAB])
        entry = sends.prepare(conn, region, spec, "run-1")
    assert entry["visits"] == 2
    assert _mode(entry["local_path"]) == 0o600 and _mode(os.path.dirname(entry["local_path"])) == 0o700
    assert _mode(tmp_path / "outbox" / "invs") == 0o700


KILLED_WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from rpu import files
    with files.WorkArea(Path(sys.argv[1])) as work:
        with files.open_private(work.file("RPU_x.xml")) as fh:
            fh.write(b"<OSCOUR>patient data</OSCOUR>")
        print("ready", flush=True)
        time.sleep(60)
""")


def test_leftovers_of_a_killed_task_are_removed_and_a_live_task_is_left_alone(region, tmp_path):
    root = intake.work_root(region)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with files.WorkArea(root) as alive:
            live = alive.file("RPU_live.xml")
            live.write_bytes(b"x")
            assert intake.tidy(region)["work_leftovers_removed"] == 0     # the killed one is still alive
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            [left] = [p for p in root.iterdir() if p != alive.path]
            assert _mode(left) == 0o700 and _mode(next(left.glob("*_RPU_x.xml"))) == 0o600
            assert intake.tidy(region)["work_leftovers_removed"] == 1
            assert [p for p in root.iterdir()] == [alive.path] and live.exists()
    finally:
        proc.kill()
        proc.wait()


def test_the_archive_is_kept_unless_a_retention_is_set(region, tmp_path):
    old = region.archive_dir / ETAB / "2025" / "01" / "RPU_old.xml"
    new = region.archive_dir / ETAB / "2026" / "11" / "RPU_new.xml"
    for p in (old, new):
        files.private_dir(p.parent)
        files.write_private(p, b"<OSCOUR/>")
    stamp = time.mktime(date(2025, 1, 15).timetuple())
    os.utime(old, (stamp, stamp))
    os.utime(old.parent, (stamp, stamp))
    os.utime(old.parent.parent, (stamp, stamp))
    assert intake.tidy(region)["archived_files_deleted"] == 0            # default: keep everything
    assert old.exists()
    kept = dataclasses.replace(region, archive_retention_days=365)
    assert files.apply_retention(kept.archive_dir, 365, today=date(2026, 11, 2)) == 1
    assert not old.exists() and not old.parent.parent.exists() and new.exists()
