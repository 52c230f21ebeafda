"""The send DAGs (`<code>_send_invs`, `_export_ars`, `_send_atih`) with dag.test() on real services: one SFTP
server per recipient, the regional PostgreSQL, the send ledger."""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pendulum
import pytest
from lxml import etree

from rpu import exports, intake, sends, sftp
from rpu.config import load_region
from rpu.connections import db_url
from rpu_dev.localservices import SftpServer
from support.regions import write_region
from support.rpu_xml import rpu_file, visit

ACTIVE = "990000127"
ACTIVE_2 = "990000135"
SHADOW = "990000200"
RUN_DAY = date(2026, 11, 13)              # window J-7 … J-1 = 6 … 12 November
LOGICAL = pendulum.datetime(2026, 11, 13, 5, 30, tz="Europe/Paris")


@pytest.fixture(scope="session")
def recipient_servers(tmp_path_factory):
    servers = {}
    try:
        for name in ("invs", "ars", "atih"):
            servers[name] = SftpServer(tmp_path_factory.mktemp(f"recipient-{name}")).start()
        yield servers
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture
def send_env(intake_env, recipient_servers, monkeypatch, tmp_path):
    """intake_env + a home on each recipient's server + the fixture visits loaded."""
    env = intake_env
    env.recipient_dirs = {}
    for name, server in recipient_servers.items():
        user, pw = f"{name}{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        env.recipient_dirs[name] = server.add_user(user, pw, tmp_path / f"recv-{name}")
        monkeypatch.setenv(f"AIRFLOW_CONN_RPU_DEMO_SFTP_{name.upper()}", server.airflow_conn_json(user, pw))
    region = env.region()
    # 3 visits a day for the active establishment over 4–12 Nov, 2 a day for another, 1 a day for a shadow one
    for etab, per_day in ((ACTIVE, 3), (ACTIVE_2, 2), (SHADOW, 1)):
        visits = [visit(ENTREE=f"{d:02d}/11/2026 {8 + i:02d}:15", SORTIE=f"{d:02d}/11/2026 {9 + i:02d}:40",
                        CP="58110", NAISSANCE="01/07/1950", COMMUNE="Saint-Aurèle")
                  for d in range(4, 13) for i in range(per_day)]
        path = tmp_path / f"in_{etab}.xml"
        path.write_bytes(rpu_file(visits, finess=etab, debut="04/11/2026", fin="12/11/2026",
                                  extract="13/11/2026 02:00:00"))
        assert intake.ingest_path(region, env.db_url, path, sender=etab)["status"] == "accepted"
    return env


def run_dag(env, dag_id, logical=LOGICAL):
    return env.dag(dag_id).test(logical_date=logical)


def ledger(env, recipient=None):
    return env.sql("SELECT recipient, kind, etab, period_start, period_end, file_name, visits, status, sha256, "
                   "run_id, ordre, extract FROM send_ledger WHERE %s::text IS NULL OR recipient = %s "
                   "ORDER BY file_name, prepared_at", recipient, recipient)


def parse_xml(path: Path):
    return etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))


def test_send_invs_sends_the_window_of_each_active_establishment_with_data(send_env):
    """One file per FINESS_ordre with data: the ten other active establishments of the demo region have never
    sent an accepted file ("declared, not yet in production"): no empty file for them."""
    env = send_env
    run = run_dag(env, "demo_send_invs")
    assert run.state == "success"
    region = env.region()
    box = env.recipient_dirs["invs"]
    names = sorted(p.name for p in box.iterdir())
    assert len(region.active) == 10
    assert names == sorted(f"RPU_{e}_0_20261106_20261112.xml" for e in (ACTIVE, ACTIVE_2))
    assert not any(n.endswith(".tmp") for n in names)
    assert not any(SHADOW in n for n in names)
    doc = parse_xml(box / f"RPU_{ACTIVE}_0_20261106_20261112.xml")
    assert doc.findtext("ETABLISSEMENT/FINESS") == ACTIVE and doc.findtext("ETABLISSEMENT/ORDRE") == "0"
    assert (doc.findtext("ETABLISSEMENT/DATEDEBUT"), doc.findtext("ETABLISSEMENT/DATEFIN")) == ("06/11/2026",
                                                                                               "12/11/2026")
    entries = [p.findtext("ENTREE") for p in doc.iter("PATIENT")]
    assert len(entries) == 7 * 3 and min(e[:10] for e in entries) == "06/11/2026"
    assert doc.findtext("PASSAGES/PATIENT/COMMUNE") == "Saint-Aurèle"   # same structure as received
    rows = {r[5]: r for r in ledger(env, "invs")}
    assert len(rows) == 2
    mine = rows[f"RPU_{ACTIVE}_0_20261106_20261112.xml"]
    assert mine[1:5] == ("daily", ACTIVE, date(2026, 11, 6), date(2026, 11, 12)) and mine[10] == 0
    assert mine[6:8] == (21, "sent") and mine[9] == run.run_id
    assert mine[8] == exports.sha256_file(box / mine[5])
    assert rows[f"RPU_{ACTIVE_2}_0_20261106_20261112.xml"][6] == 14
    # the file passes the concentrator's own checks (RPU 2006 structure)
    from rpu.checks import check_file

    report = check_file(box / mine[5], region)
    assert report.accepted and report.visits == 21


def test_shadow_establishment_switched_to_active_is_sent(send_env, tmp_path):
    env = send_env
    path = env.region_dir / "demo.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        f"finess: '{SHADOW}'\n  name: Clinique des Tilleuls\n  status: shadow",
        f"finess: '{SHADOW}'\n  name: Clinique des Tilleuls\n  status: active"), encoding="utf-8")
    assert load_region(path).establishment(SHADOW).status == "active"
    assert run_dag(env, "demo_send_invs").state == "success"
    assert (env.recipient_dirs["invs"] / f"RPU_{SHADOW}_0_20261106_20261112.xml").exists()


def test_export_ars_csv_and_manifest(send_env):
    env = send_env
    assert run_dag(env, "demo_export_ars").state == "success"
    box = env.recipient_dirs["ars"]
    data = gzip.decompress((box / "ARS_demo_20261106_20261112.csv.gz").read_bytes()).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(data), delimiter=";"))
    assert "COMMUNE" not in rows[0] and "NAISSANCE" not in rows[0]
    assert len(rows) == 7 * (3 + 2 + 1)                       # shadow establishments included for the ARS
    first = next(r for r in rows if r["FINESS"] == ACTIVE)
    assert first["AGE"] == "76" and first["DUREE_MIN"] == "85" and first["LISTE_DA"] == "I10"
    assert {r["ORDRE"] for r in rows} == {"0"}
    manifest = json.loads((box / "ARS_demo_20261106_20261112.csv.gz.manifest.json").read_text())
    assert manifest["visits"] == len(rows)
    assert manifest["per_day"][f"{ACTIVE}_0"]["2026-11-06"] == 3 and manifest["per_day"][f"{SHADOW}_0"]["2026-11-12"] == 1
    assert ledger(env, "ars")[0][6:8] == (len(rows), "sent")


def test_export_ars_identifying_variant(send_env):
    env = send_env
    path = env.region_dir / "demo.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "ars_export:\n  identifying: true\n", encoding="utf-8")
    assert run_dag(env, "demo_export_ars").state == "success"
    data = gzip.decompress((env.recipient_dirs["ars"] / "ARS_demo_20261106_20261112.csv.gz").read_bytes())
    row = next(csv.DictReader(io.StringIO(data.decode()), delimiter=";"))
    assert row["COMMUNE"] == "Saint-Aurèle" and row["NAISSANCE"] == "1950-07-01"


def test_send_atih_is_cumulative_and_anonymised(send_env):
    env = send_env
    run = run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris"))
    assert run.state == "success"
    box = env.recipient_dirs["atih"]
    name = f"ATIH_RPU_{ACTIVE}_0_20260101_20261130.xml"
    raw = (box / name).read_bytes()
    doc = parse_xml(box / name)
    patients = list(doc.iter("PATIENT"))
    assert len(patients) == 9 * 3                              # every stored day since 1 January
    for tag in ("COMMUNE", "NAISSANCE", "CP"):
        assert not list(doc.iter(tag)), tag
    assert b"Saint-Aur" not in raw and b"01/07/1950" not in raw and b"58110" not in raw
    assert {p.findtext("CODE_GEO") for p in patients} == {"58G01"}   # from the sample table
    assert {p.findtext("AGE") for p in patients} == {"76"}
    manifest = json.loads((box / f"{name}.manifest.json").read_text())
    assert manifest["visits"] == 27 and manifest["finess"] == ACTIVE
    rows = {r[5]: r for r in ledger(env, "atih")}
    assert rows[name][1] == "cumulative" and rows[name][6:8] == (27, "sent")
    assert not any(SHADOW in n for n in rows)


def test_atih_fallback_for_postal_codes_missing_from_the_table(send_env, tmp_path):
    env = send_env
    region = env.region()
    cps = ["58999", "99134", "99999", "75012", "", "7501"]
    path = tmp_path / "geo.xml"
    path.write_bytes(rpu_file([visit(ENTREE=f"20/11/2026 1{i}:00", SORTIE=f"20/11/2026 1{i}:30", CP=cp)
                               for i, cp in enumerate(cps)], finess=ACTIVE, debut="20/11/2026", fin="20/11/2026",
                              extract="21/11/2026 02:00:00"))
    intake.ingest_path(region, env.db_url, path, sender=ACTIVE)
    out = tmp_path / "out"
    with __import__("rpu.store", fromlist=["x"]).connection(env.db_url) as conn:
        spec = exports.atih_specs(conn, region, date(2026, 12, 2), [ACTIVE])[0]
        exports.write_to_dir(conn, region, [spec], out)
    doc = parse_xml(out / spec.file_name)
    codes = [p.findtext("CODE_GEO") for p in doc.iter("PATIENT") if p.findtext("ENTREE").startswith("20/11")]
    assert codes == ["58999", "99134", "99999", "75999", "99999", "99999"]


def test_recipient_outage_fails_then_a_retry_sends_the_same_file(send_env, recipient_servers):
    """The recipient is down: the run fails, the ledger says so; the data changes meanwhile; the retry of that
    run sends the file prepared first (same sha256), while a new run for the date sends the current data."""
    env = send_env
    region = env.region()
    server = recipient_servers["invs"]
    server.pause()
    try:
        run = run_dag(env, "demo_send_invs")
    finally:
        server.resume()
    assert run.state == "failed"
    failed = {r[5]: r for r in ledger(env, "invs")}
    mine = failed[f"RPU_{ACTIVE}_0_20261106_20261112.xml"]
    assert mine[7] == "failed" and mine[6] == 21
    assert not list(env.recipient_dirs["invs"].iterdir())
    # new data arrives for the window
    path = Path(env.data_dir) / "late.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rpu_file([visit(ENTREE="12/11/2026 23:00", SORTIE="12/11/2026 23:50")] * 5, finess=ACTIVE,
                              debut="12/11/2026", fin="12/11/2026", extract="13/11/2026 09:00:00"))
    intake.ingest_path(region, env.db_url, path, sender=ACTIVE)
    # Airflow's retry of the same task instance: same run id, same slot
    with __import__("rpu.store", fromlist=["x"]).connection(env.db_url) as conn:
        spec = next(s for s in exports.invs_specs(conn, region, RUN_DAY, [ACTIVE]))
    result = sends.send(region, spec, mine[9], db_url(region.db_conn_id),
                        lambda: sftp.open_remote(region.sends.recipients["invs"].conn_id))
    assert result["status"] == "sent" and result["sha256"] == mine[8] and result["visits"] == 21
    assert exports.sha256_file(env.recipient_dirs["invs"] / spec.file_name) == mine[8]
    # a new run for that date re-sends the date's current content
    assert run_dag(env, "demo_send_invs").state == "success"
    doc = parse_xml(env.recipient_dirs["invs"] / spec.file_name)
    assert len(list(doc.iter("PATIENT"))) == 21 - 3 + 5
    slot_rows = [r for r in ledger(env, "invs") if r[5] == spec.file_name]
    assert len(slot_rows) == 2 and len({r[9] for r in slot_rows}) == 2 and all(r[7] == "sent" for r in slot_rows)


def test_upload_is_atomic_no_partial_file_under_the_final_name(send_env, tmp_path):
    """Watch the recipient's directory during a large upload: the final name only ever shows the full file."""
    env = send_env
    region = env.region()
    big = tmp_path / "big.xml"
    big.write_bytes(b"<x>" + b"0" * (30 * 1024 * 1024) + b"</x>")
    final = env.recipient_dirs["invs"] / "BIG.xml"
    seen: set[int] = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.add(final.stat().st_size)
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with sftp.open_remote(region.sends.recipients["invs"].conn_id) as remote:
            remote.put_file(big, "BIG.xml")
    finally:
        stop.set()
        watcher.join()
    assert seen <= {big.stat().st_size}
    assert final.stat().st_size == big.stat().st_size
    assert [p.name for p in env.recipient_dirs["invs"].iterdir()] == ["BIG.xml"]


def test_periods_come_from_the_logical_date():
    assert exports.window(date(2026, 11, 13), 7) == (date(2026, 11, 6), date(2026, 11, 12))
    assert exports.window(date(2026, 1, 3), 7) == (date(2025, 12, 27), date(2026, 1, 2))
    assert exports.atih_period(date(2026, 12, 2), "monthly") == (date(2026, 1, 1), date(2026, 11, 30))
    assert exports.atih_period(date(2026, 1, 2), "monthly") == (date(2025, 1, 1), date(2025, 12, 31))
    assert exports.atih_period(date(2026, 11, 23), "weekly") == (date(2026, 1, 1), date(2026, 11, 22))   # Monday
    assert exports.atih_period(date(2026, 11, 25), "weekly") == (date(2026, 1, 1), date(2026, 11, 22))
    assert exports.atih_period(date(2027, 1, 4), "weekly") == (date(2027, 1, 1), date(2027, 1, 3))
    assert exports.months(date(2026, 1, 15), date(2026, 3, 2)) == [
        (date(2026, 1, 15), date(2026, 1, 31)), (date(2026, 2, 1), date(2026, 2, 28)), (date(2026, 3, 1), date(2026, 3, 2))]


def test_rpu_export_writes_what_the_dag_sends(send_env, tmp_path, capsys):
    from rpu.cli import main

    env = send_env
    assert run_dag(env, "demo_send_invs").state == "success"
    out = tmp_path / "by-hand"
    assert main(["export", "invs", "--region", "demo", "--db", env.db_url, "--date", "2026-11-13",
                 "--out", str(out)]) == 0
    sent = env.recipient_dirs["invs"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in sent.iterdir())
    for p in out.iterdir():   # the same content; only the EXTRACT differs: each file says when it was built
        assert re.sub(rb"<EXTRACT>[^<]*</EXTRACT>", b"", p.read_bytes()) == \
            re.sub(rb"<EXTRACT>[^<]*</EXTRACT>", b"", (sent / p.name).read_bytes()), p.name
    assert main(["ledger", "--region", "demo", "--db", env.db_url, "--recipient", "invs"]) == 0
    assert f"RPU_{ACTIVE}_0_20261106_20261112.xml" in capsys.readouterr().out


def test_export_escapes_values_and_computes_ages_at_the_edges(send_env, tmp_path):
    """Values needing XML escaping survive the SQL rendering; AGE in whole years, birthdays and errors."""
    from rpu import store

    env = send_env
    region = env.region()
    cases = [("A&B <x> \\ y", "20/11/1950", "20/11/2026", "76"),    # birthday on the entry day
             ("plain", "21/11/1950", "20/11/2026", "75"),           # the day before the birthday
             ("a\ttab", "01/12/2026", "20/11/2026", "-1")]          # born after entry (a flagged visit)
    visits = [visit(ENTREE=f"{entry} 10:0{i}", SORTIE=f"{entry} 11:00", MOTIF=motif, NAISSANCE=birth, CP="58110")
              for i, (motif, birth, entry, _) in enumerate(cases)]
    path = tmp_path / "edge.xml"
    path.write_bytes(rpu_file(visits, finess=ACTIVE, debut="20/11/2026", fin="20/11/2026",
                              extract="21/11/2026 02:00:00"))
    assert intake.ingest_path(region, env.db_url, path, sender=ACTIVE)["status"] == "accepted"
    out = tmp_path / "out"
    with store.connection(env.db_url) as conn:
        specs = exports.invs_specs(conn, region, date(2026, 11, 21), [ACTIVE]) + \
            exports.atih_specs(conn, region, date(2026, 12, 2), [ACTIVE])
        exports.write_to_dir(conn, region, specs, out)
    oscour = parse_xml(out / specs[0].file_name)
    motifs = {p.findtext("MOTIF") for p in oscour.iter("PATIENT")}
    assert {"A&B <x> \\ y", "a\ttab", "plain"} <= motifs
    atih = parse_xml(out / specs[1].file_name)
    ages = {p.findtext("MOTIF"): p.findtext("AGE") for p in atih.iter("PATIENT")}
    assert [ages[m] for m, *_ in cases] == [c[3] for c in cases]


# --- issue 11: what InVS, ATIH and the ARS receive --------------------------------------------------------------

def _ingest(env, etab: str, visits: list[dict], debut: str, fin: str, extract: str, name: str, **kw) -> dict:
    path = Path(env.data_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rpu_file(visits, finess=etab, debut=debut, fin=fin, extract=extract, **kw))
    receipt = intake.ingest_path(env.region(), env.db_url, path, sender=etab)
    assert receipt["status"] == "accepted", receipt
    return receipt


def _day_visits(day: str, n: int, **items) -> list[dict]:
    return [visit(ENTREE=f"{day} {8 + i:02d}:00", SORTIE=f"{day} {8 + i:02d}:45", CP="58110", **items)
            for i in range(n)]


def _header(path: Path) -> dict[str, str]:
    doc = parse_xml(path)
    return {c.tag: c.text or "" for c in doc.find("ETABLISSEMENT")}


def test_a_table_loaded_by_hand_is_the_one_the_atih_send_uses(send_env, tmp_path):
    """`rpu geo load` then the ATIH send: the hand-loaded table is used (the demo sample used to be reloaded
    over it before every ATIH build, turning almost every code into XX999)."""
    from rpu.cli import main

    env = send_env
    write_region(env.region_dir, atih={})                  # no atih.geo_table, as `rpu region add` writes it
    table = tmp_path / "pmsi_2026.csv"
    table.write_text("cp;code_geo\n58110;58Z77\n", encoding="utf-8")
    assert main(["geo", "load", "--db", env.db_url, "--file", str(table)]) == 0
    assert run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris")).state == "success"
    doc = parse_xml(env.recipient_dirs["atih"] / f"ATIH_RPU_{ACTIVE}_0_20260101_20261130.xml")
    assert {p.findtext("CODE_GEO") for p in doc.iter("PATIENT")} == {"58Z77"}
    assert run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris")).state == "success"
    assert env.sql("SELECT rtrim(code_geo) FROM pmsi_geo") == [("58Z77",)]   # still the one loaded by hand


def test_without_a_table_the_atih_send_fails_and_sends_nothing(send_env, capfd):
    env = send_env
    write_region(env.region_dir, atih={})
    run = run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris"))
    assert run.state == "failed"
    out = "".join(capfd.readouterr())
    assert "table (pmsi_geo) is empty" in out and "rpu geo load" in out
    assert not list(env.recipient_dirs["atih"].iterdir())
    assert ledger(env, "atih") == []


def test_a_table_that_does_not_match_the_visits_is_refused(send_env, tmp_path, capfd):
    from rpu.cli import main

    env = send_env
    write_region(env.region_dir, atih={})
    table = tmp_path / "wrong.csv"
    table.write_text("cp;code_geo\n75011;75011\n", encoding="utf-8")   # another region's codes only
    assert main(["geo", "load", "--db", env.db_url, "--file", str(table)]) == 0
    capfd.readouterr()
    run = run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris"))
    assert run.state == "failed"
    out = "".join(capfd.readouterr())
    assert "maps only 0 of 45 French postal codes" in out and "nothing was sent to ATIH" in out   # 27 + 18
    assert not list(env.recipient_dirs["atih"].iterdir())


@pytest.mark.parametrize("frequency", ["weekly", "monthly"])
def test_every_day_of_the_year_reaches_atih_in_a_closing_file(send_env, frequency):
    """29–31 December: the first ATIH run after 31 December sends the closing file of the year (1 January –
    31 December), and a correction of December received in January is in the one the first run after January
    sends."""
    env = send_env
    write_region(env.region_dir, atih={"frequency": frequency, "geo_table": "include/data/pmsi_geo_sample.csv"})
    # the daily file of 5 January 2026: entry days 29 December 2025 … 4 January 2026, 2 visits a day
    days = [date(2025, 12, 29) + timedelta(days=i) for i in range(7)]
    _ingest(env, ACTIVE, [v for d in days for v in _day_visits(f"{d:%d/%m/%Y}", 2)], "29/12/2025", "04/01/2026",
            "05/01/2026 02:00:00", "RPU_0105.xml")
    first = date(2026, 1, 5) if frequency == "weekly" else date(2026, 1, 2)
    assert run_dag(env, "demo_send_atih", pendulum.datetime(first.year, first.month, first.day, 6, 0,
                                                            tz="Europe/Paris")).state == "success"
    box = env.recipient_dirs["atih"]
    closing = f"ATIH_RPU_{ACTIVE}_0_20250101_20251231.xml"
    doc = parse_xml(box / closing)
    assert (_header(box / closing)["DATEDEBUT"], _header(box / closing)["DATEFIN"]) == ("01/01/2025", "31/12/2025")
    assert sorted(p.findtext("ENTREE")[:10] for p in doc.iter("PATIENT")) == [
        "29/12/2025", "29/12/2025", "30/12/2025", "30/12/2025", "31/12/2025", "31/12/2025"]
    if frequency == "weekly":
        assert (box / f"ATIH_RPU_{ACTIVE}_0_20260101_20260104.xml").exists()   # and the year that starts
    # a correction of 31 December received on 10 January (5 visits instead of 2)
    _ingest(env, ACTIVE, _day_visits("31/12/2025", 5), "31/12/2025", "31/12/2025", "10/01/2026 02:00:00",
            "RPU_0110.xml")
    after_january = date(2026, 2, 2)       # the first run after January: Monday 2 February, or the 2nd
    assert run_dag(env, "demo_send_atih", pendulum.datetime(2026, 2, 2, 6, 0, tz="Europe/Paris")).state == "success"
    doc = parse_xml(box / closing)
    assert sum(p.findtext("ENTREE").startswith("31/12/2025") for p in doc.iter("PATIENT")) == 5
    rows = [r for r in ledger(env, "atih") if r[5] == closing]
    assert [r[1] for r in rows] == (["closing", "closing"] if frequency == "weekly" else ["cumulative", "closing"])
    assert [r[6] for r in rows] == [6, 9] and after_january.month == 2
    # later runs do not send it again
    assert run_dag(env, "demo_send_atih", pendulum.datetime(2026, 3, 2, 6, 0, tz="Europe/Paris")).state == "success"
    assert len([r for r in ledger(env, "atih") if r[5] == closing]) == 2


def test_one_file_per_finess_ordre_with_its_ordre(send_env):
    """Two emergency units of one establishment (ORDRE 0 and 1): one file each, for InVS and ATIH, ORDRE in the
    header; the ARS export and its manifest tell them apart; ledger rows per FINESS_ordre."""
    env = send_env
    _ingest(env, ACTIVE, [v for d in range(6, 13) for v in _day_visits(f"{d:02d}/11/2026", 1)], "06/11/2026",
            "12/11/2026", "13/11/2026 02:30:00", "RPU_ordre1.xml", ordre="1")
    assert run_dag(env, "demo_send_invs").state == "success"
    box = env.recipient_dirs["invs"]
    zero, one = (box / f"RPU_{ACTIVE}_{o}_20261106_20261112.xml" for o in (0, 1))
    assert (_header(zero)["ORDRE"], _header(one)["ORDRE"]) == ("0", "1")
    assert [len(list(parse_xml(p).iter("PATIENT"))) for p in (zero, one)] == [21, 7]
    rows = {(r[2], r[10]): r[6] for r in ledger(env, "invs")}
    assert rows == {(ACTIVE, 0): 21, (ACTIVE, 1): 7, (ACTIVE_2, 0): 14}
    assert run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris")).state == "success"
    assert _header(env.recipient_dirs["atih"] / f"ATIH_RPU_{ACTIVE}_1_20260101_20261130.xml")["ORDRE"] == "1"
    assert run_dag(env, "demo_export_ars").state == "success"
    manifest = json.loads((env.recipient_dirs["ars"] / "ARS_demo_20261106_20261112.csv.gz.manifest.json").read_text())
    assert sum(manifest["per_day"][f"{ACTIVE}_1"].values()) == 7 and sum(manifest["per_day"][f"{ACTIVE}_0"].values()) == 21


def test_extract_is_when_the_file_was_built_and_a_rerun_supersedes(send_env):
    """EXTRACT = build time in the region's local time: a re-run of a past date is younger than what was sent."""
    from zoneinfo import ZoneInfo

    env = send_env
    paris = ZoneInfo("Europe/Paris")
    before = datetime.now(paris).replace(tzinfo=None, microsecond=0)
    assert run_dag(env, "demo_send_invs").state == "success"
    path = env.recipient_dirs["invs"] / f"RPU_{ACTIVE}_0_20261106_20261112.xml"
    first = datetime.strptime(_header(path)["EXTRACT"], "%d/%m/%Y %H:%M:%S")
    assert before <= first <= datetime.now(paris).replace(tzinfo=None)   # not 13/11/2026 00:00:00
    time.sleep(1.1)
    assert run_dag(env, "demo_send_invs").state == "success"             # the same logical date, again
    second = datetime.strptime(_header(path)["EXTRACT"], "%d/%m/%Y %H:%M:%S")
    assert second > first
    assert sorted(r[11] for r in ledger(env, "invs") if r[2] == ACTIVE) == [first, second]


def test_held_back_days_are_never_declared(send_env):
    """A batch quarantined by the quality gate (9–10 November): no file declares those days — the InVS file is
    split around them, the ATIH file ends before them — so what the recipient has for them is not replaced by
    nothing; the manifests and the ledger say which days were left out."""
    env = send_env
    write_region(env.region_dir, quality={"blocking": ["SEXE_DOMAIN"]})
    receipt = _ingest(env, ACTIVE, _day_visits("09/11/2026", 2) + _day_visits("10/11/2026", 2, SEXE="X"),
                      "09/11/2026", "10/11/2026", "13/11/2026 03:00:00", "RPU_held.xml")
    assert receipt["quality"]["quarantined"]
    assert run_dag(env, "demo_send_invs").state == "success"
    box = env.recipient_dirs["invs"]
    mine = sorted(p.name for p in box.iterdir() if ACTIVE in p.name)
    assert mine == [f"RPU_{ACTIVE}_0_20261106_20261108.xml", f"RPU_{ACTIVE}_0_20261111_20261112.xml"]
    assert [len(list(parse_xml(box / n).iter("PATIENT"))) for n in mine] == [9, 6]
    assert (box / f"RPU_{ACTIVE_2}_0_20261106_20261112.xml").exists()            # the others: whole window
    held = [date(2026, 11, 9), date(2026, 11, 10)]
    assert {r[5]: r for r in env.sql("SELECT etab, held_back, period_start, period_end, kind, file_name "
                                     "FROM send_ledger")}[mine[0]][1] == held
    assert run_dag(env, "demo_send_atih", pendulum.datetime(2026, 12, 2, 6, 0, tz="Europe/Paris")).state == "success"
    atih = env.recipient_dirs["atih"] / f"ATIH_RPU_{ACTIVE}_0_20260101_20261108.xml"
    assert _header(atih)["DATEFIN"] == "08/11/2026"
    manifest = json.loads(atih.with_name(atih.name + ".manifest.json").read_text())
    assert manifest["held_back"] == ["2026-11-09", "2026-11-10"] and manifest["visits"] == 5 * 3
    assert run_dag(env, "demo_export_ars").state == "success"
    ars = json.loads((env.recipient_dirs["ars"] / "ARS_demo_20261106_20261112.csv.gz.manifest.json").read_text())
    assert ars["finess_ordre"][f"{ACTIVE}_0"]["held_back"] == ["2026-11-09", "2026-11-10"]
    assert "2026-11-09" not in ars["per_day"][f"{ACTIVE}_0"]


def test_manifest_counts_are_those_of_the_rows_written(send_env, monkeypatch):
    """A load that commits right after the rows are written, before the manifest is made, changes nothing in
    the manifest: its counts are those of the file (they used to come from a second query)."""
    env = send_env
    original = exports.write_ars
    loaded = []

    def write_then_a_load_commits(*args, **kwargs):
        out = original(*args, **kwargs)
        if not loaded:
            loaded.append(_ingest(env, ACTIVE_2, _day_visits("12/11/2026", 9), "12/11/2026", "12/11/2026",
                                  "13/11/2026 05:00:00", "RPU_meanwhile.xml"))
        return out

    monkeypatch.setattr(exports, "write_ars", write_then_a_load_commits)
    assert run_dag(env, "demo_export_ars").state == "success" and loaded
    box = env.recipient_dirs["ars"]
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(
        (box / "ARS_demo_20261106_20261112.csv.gz").read_bytes()).decode()), delimiter=";"))
    manifest = json.loads((box / "ARS_demo_20261106_20261112.csv.gz.manifest.json").read_text())
    per_file = {}
    for r in rows:
        key = f"{r['FINESS']}_{r['ORDRE']}"
        per_file.setdefault(key, {}).setdefault(r["ENTREE"][:10], 0)
        per_file[key][r["ENTREE"][:10]] += 1
    assert manifest["per_day"] == per_file and manifest["visits"] == len(rows) == 42
    assert ledger(env, "ars")[0][6] == len(rows)


OPS = "exploitation-send@example.org"


@pytest.fixture
def ops_env(send_env, smtp_sink, monkeypatch):
    """send_env with operations' address in the region file and the SMTP connection to a real SMTP sink."""
    write_region(send_env.region_dir, alerts={"ars": ["veille@ars.example.org"], "ops": [OPS]})
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_sink.airflow_conn_json())
    smtp_sink.clear()
    send_env.smtp = smtp_sink
    return send_env


def test_a_failed_run_is_mailed_to_operations_in_french(ops_env, recipient_servers):
    """Nobody used to hear of a run failed after its retries: the region's notifier mails operations."""
    env = ops_env
    recipient_servers["invs"].pause()
    try:
        run = run_dag(env, "demo_send_invs")
    finally:
        recipient_servers["invs"].resume()
    assert run.state == "failed"
    [m] = [m for m in env.smtp.messages if OPS in m.rcpt_tos]
    assert m.rcpt_tos == [OPS]
    subject = " ".join(m.subject.split())
    assert subject.startswith("[RPU demo] ÉCHEC demo_send_invs — tâche send (13/11/2026 05:30")
    text = m.message.get_body(("plain",)).get_content()
    assert "nouvelles tentatives épuisées" in text and "une tâche a échoué après ses nouvelles tentatives" in text
    assert "registre des envois" in text and run.run_id in text
    for trace in ("Saint-Aur", "01/07/1950", "58110"):                     # no patient data
        assert trace not in text and trace not in subject


def test_the_invs_deadline_alert_mails_operations(ops_env, monkeypatch):
    """The deadline of the daily InVS send (08:00 unless the region says otherwise): its callback, as Airflow's
    executor calls it with the run's context, tells operations. (Its definition: test_dag_policy.py.)"""
    from rpu import ops

    env = ops_env
    ops.deadline_missed({"dag_run": {"dag_id": "demo_send_invs", "dag_run_id": "scheduled__2026-11-13T04:30:00+00:00",
                                     "logical_date": "2026-11-13T04:30:00Z"},
                         "deadline": {"deadline_time": "2026-11-13T07:00:00Z"}}, region="demo", deadline="08:00")
    [m] = [m for m in env.smtp.messages if OPS in m.rcpt_tos]
    text = m.message.get_body(("plain",)).get_content()
    assert " ".join(m.subject.split()) == "[RPU demo] ÉCHEC demo_send_invs (13/11/2026 05:30 (CET))"
    assert "n'a pas réussi avant l'heure limite (08:00, Europe/Paris)" in text and "heure limite dépassée" in text
