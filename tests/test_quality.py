"""Data quality with Great Expectations (rpu.quality): the suites, their agreement with rpu_format, the XSD and
the per-visit rules, each expectation failing on a crafted batch, and the gate on a real PostgreSQL (results
stored, receipts, blocking and quarantine, release, the gate's own failures). The DAG runs are in
tests/dags/test_quality_gate.py."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
from collections import Counter
from datetime import date, datetime, timedelta

import psycopg
import pytest
from lxml import etree

from rpu import gate_ahead, intake, store, xsd
from rpu import rpu_format as F
from rpu.checks import check_file
from rpu.cli import main
from rpu.problems import QUALITY, RULES
from rpu import expectations
from rpu.quality import batch, gate, gx, results, suites
from support.exported import everywhere, exported
from support.rpu_xml import rpu_file, visit

ETAB = "990000127"
XS = "{http://www.w3.org/2001/XMLSchema}"
NAMES = list(expectations.catalogue())
VISIT_NAMES = [e["meta"]["name"] for e in expectations.load(expectations.VISIT_SUITE)["expectations"]]


# --- suites: generated, committed, loadable ---------------------------------------------------------------

@pytest.mark.parametrize("name", expectations.SUITES)
def test_committed_suites_are_the_generated_ones(name):
    assert expectations.suite_path(name).read_text(encoding="utf-8") == suites.render(name), \
        "run `python -m rpu.quality --write` and commit include/expectations/"


@pytest.mark.parametrize("name", expectations.SUITES)
def test_suites_load_in_gx_as_written(name):
    doc = expectations.load(name)
    suite = gx.gx_suite(name)
    assert len(suite.expectations) == len(doc["expectations"])
    back = suite.to_json_dict()["expectations"]
    for written, loaded in zip(doc["expectations"], back):
        assert loaded["type"] == written["type"]
        assert loaded["meta"] == written["meta"]
        assert loaded["kwargs"] == written["kwargs"], written["meta"]["name"]


def test_every_expectation_has_a_stable_unique_name_and_french_words():
    names = [e["meta"]["name"] for s in expectations.SUITES for e in expectations.load(s)["expectations"]]
    assert len(names) == len(set(names))
    for s in expectations.SUITES:
        doc = expectations.load(s)
        assert doc["meta"]["version"] == suites.suite_version(doc["expectations"])
        for e in doc["expectations"]:
            assert re.fullmatch(r"[A-Z][A-Z_]+", e["meta"]["name"])
            assert e["meta"]["description"] and e["meta"]["unit"] in (suites.PASSAGES, suites.JOURS, "")
            columns = [v for k, v in e["kwargs"].items() if k.startswith("column")]
            assert set(columns) <= set(batch.BATCH_COLUMNS if s == expectations.VISIT_SUITE else batch.DAY_COLUMNS)


def test_a_changed_rule_changes_the_version():
    doc = suites.build(expectations.VISIT_SUITE)
    changed = json.loads(json.dumps(doc["expectations"]))
    changed[0]["kwargs"]["value_set"].append("Z")
    assert suites.suite_version(changed) != doc["meta"]["version"]


# --- one source of truth: rpu_format ↔ XSD ↔ suites ↔ per-visit rules ---------------------------------------

def _by_name() -> dict[str, dict]:
    return {e["meta"]["name"]: e for s in expectations.SUITES for e in expectations.load(s)["expectations"]}


def _xsd():
    root = etree.parse(str(xsd.XSD_PATH), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    domains = {st.get("name")[len("domain_"):]: [x.get("value") for x in st.iterfind(f"{XS}restriction/{XS}enumeration")]
               for st in root.iterfind(f"{XS}simpleType") if st.get("name").startswith("domain_")}
    formats = {st.get("name")[len("format_"):]: st.find(f"{XS}restriction/{XS}pattern").get("value")
               for st in root.iterfind(f"{XS}simpleType") if st.get("name").startswith("format_")}
    return domains, formats


def test_every_per_visit_quality_rule_is_an_expectation_with_its_words():
    by_name = _by_name()
    rules = [r for r, (level, _) in RULES.items() if level == QUALITY]
    assert set(rules) <= set(VISIT_NAMES)
    for rule in rules:
        assert by_name[rule]["meta"]["description"].startswith(RULES[rule][1]), rule


def test_value_sets_are_the_xsd_enumerations_and_the_domains():
    by_name = _by_name()
    domains, _ = _xsd()
    for item, values in F.DOMAINS.items():
        e = by_name[f"{item}_DOMAIN"]
        assert e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == item.lower()
        assert e["kwargs"]["value_set"] == list(values) == domains[item]


def test_format_regexes_are_the_xsd_patterns():
    by_name = _by_name()
    _, formats = _xsd()
    assert by_name["CP_FORMAT"]["kwargs"]["regex"] == suites.full_regex(formats["CP"])
    assert by_name["DP_FORMAT"]["kwargs"]["regex"] == suites.full_regex(formats["CIM10"])
    assert by_name["DA_FORMAT"]["kwargs"]["regex"] == suites.list_violation_regex(formats["CIM10"])
    assert by_name["ACTE_FORMAT"]["kwargs"]["regex"] == suites.list_violation_regex(formats["CCAM"])
    assert (formats["CP"], formats["CIM10"], formats["CCAM"]) == (F.CP_RE, F.CIM10_RE, F.CCAM_RE)


def test_bounds_and_coherence_tables_come_from_rpu_format():
    by_name = _by_name()
    assert by_name["AGE_RANGE"]["kwargs"] == {"column": "age", "min_value": 0, "max_value": F.MAX_AGE_YEARS}
    assert by_name["DURATION_TOO_LONG"]["kwargs"]["max_value"] == F.MAX_DURATION_HOURS * 60
    for rule, mode, item, table in suites.COHERENCE:
        kw = by_name[rule]["kwargs"]
        assert kw["column"] == suites.pair_column(mode, item)
        assert {tuple(p.split(suites.PAIR_SEP)) for p in kw["value_set"]} == \
            {(m, v) for m, vs in table.items() for v in vs if v}
        assert kw["row_condition"]["parameter"] == list(table)
    for item in suites.COMPLETENESS_ITEMS:
        assert by_name[f"COMPLETENESS_{item}"]["kwargs"]["mostly"] == suites.COMPLETENESS_MIN == 0.8
    assert by_name["COMPLETENESS_ORIENT"]["kwargs"]["row_condition"]["parameter"] == ["6", "7"]
    assert by_name["COMPLETENESS_DP"]["kwargs"]["row_condition"]["conditions"][1]["parameter"] == list(F.ORIENT_HOME)


def test_list_regex_flags_a_list_exactly_when_one_code_is_not_of_the_format():
    rng = random.Random(5)
    alphabet = "ABDEQPZ0123456789+.x "
    for element, one in ((F.CIM10_RE, F.cim10), (F.CCAM_RE, F.ccam)):
        violation = re.compile(suites.list_violation_regex(element))
        for _ in range(3000):
            codes = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.5:
                codes = [rng.choice(["R074", "I10", "R53+1", "DEQP003", "ZZQK0021", "M62890"]) for _ in codes]
            expected_bad = not all(one(c) for c in codes)
            assert bool(violation.search(suites.LIST_SEP.join(codes))) == expected_bad, codes


# --- in memory (pandas engine): each expectation fails on a crafted batch, passes on a clean one -------------

HOSP = {"MODE_SORTIE": "6", "DESTINATION": "1", "ORIENT": "MED"}


def _clean() -> list[dict]:
    return [visit(ENTREE=f"01/11/2026 {8 + i:02d}:{i:02d}", SORTIE=f"01/11/2026 {9 + i:02d}:30", **(HOSP if i < 3 else {}))
            for i in range(10)]


def _crafted(name: str) -> list[dict]:
    """A batch where expectation `name` fails (the other ones may fail too)."""
    vs = _clean()
    one = {"CP_FORMAT": {"CP": "7501"}, "DP_FORMAT": {"DP": "zz"}, "DA_FORMAT": {"LISTE_DA": ["I10", "1AB"]},
           "ACTE_FORMAT": {"LISTE_ACTES": ["DEQP003", "bad"]}, "NAISSANCE_INVALID": {"NAISSANCE": "1980-02-01"},
           "AGE_RANGE": {"NAISSANCE": "01/02/1880"}, "SORTIE_INVALID": {"SORTIE": "31/11/2026 10:00"},
           "DURATION_NEGATIVE": {"SORTIE": "01/11/2026 07:00"}, "DURATION_TOO_LONG": {"SORTIE": "05/11/2026 07:00"},
           "PROVENANCE_INCOHERENT": {"MODE_ENTREE": "8", "PROVENANCE": "1"},
           "DESTINATION_INCOHERENT": {"MODE_SORTIE": "8", "DESTINATION": "1", "ORIENT": ""},
           "ORIENT_INCOHERENT": {"MODE_SORTIE": "6", "DESTINATION": "1", "ORIENT": "FUGUE"}}
    if name in one:
        vs[5].update(one[name])
    elif name.endswith("_DOMAIN"):
        vs[5][name[: -len("_DOMAIN")]] = "X"
    elif name.startswith("COMPLETENESS_"):
        item = name[len("COMPLETENESS_"):]
        for v in vs[:3] if item in ("DESTINATION", "ORIENT") else vs[:5]:   # the 3 hospitalised, or 5 of 10
            v[item] = ""
    else:
        raise AssertionError(f"no crafted batch for {name}")
    return vs


def _frame(tmp_path, visits, name="f.xml"):
    path = tmp_path / name
    path.write_bytes(rpu_file(visits))
    sink = batch.FrameSink()
    report = check_file(path, sink=sink)
    assert report.accepted and report.visits_rejected == 0
    return report, sink.frame()


@pytest.fixture(scope="module")
def pandas_source():
    return gx.context().data_sources.add_pandas("test")


def _run(source, frame, suite=expectations.VISIT_SUITE, params=None, only=None) -> dict[str, dict]:
    batch = source.add_dataframe_asset(f"a{random.random()}").add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    return {o["name"]: o for o in gx.validate(batch, suite, params, two_pass=False, only=only)}


def test_the_clean_batch_passes_every_visit_expectation(tmp_path, pandas_source):
    _, frame = _frame(tmp_path, _clean())
    results = _run(pandas_source, frame)
    assert list(results) == VISIT_NAMES
    assert [n for n, o in results.items() if not o["success"]] == []


@pytest.mark.parametrize("name", VISIT_NAMES)
def test_each_visit_expectation_fails_on_its_crafted_batch(tmp_path, pandas_source, name):
    report, frame = _frame(tmp_path, _crafted(name))
    o = _run(pandas_source, frame, only={name})[name]
    assert not o["success"] and o["error"] is None and o["unexpected_count"] >= 1, o
    if name in RULES:   # and the per-visit rule of the same name flags as many visits
        assert report.flags[name] == o["unexpected_count"]


def test_dp_completeness_leaves_out_patients_gone_without_care(tmp_path, pandas_source):
    vs = _clean()
    for v in vs[3:8]:
        v.update(DP="", MODE_SORTIE="8", ORIENT="FUGUE")
    _, frame = _frame(tmp_path, vs)
    assert _run(pandas_source, frame, only={"COMPLETENESS_DP"})["COMPLETENESS_DP"]["success"]


def test_completeness_passes_at_80_percent(tmp_path, pandas_source):
    vs = _clean()
    for v in vs[:2]:
        v["MOTIF"] = ""
    _, frame = _frame(tmp_path, vs)
    o = _run(pandas_source, frame, only={"COMPLETENESS_MOTIF"})["COMPLETENESS_MOTIF"]
    assert o["success"] and o["unexpected_count"] == 2 and o["unexpected_percent"] == 20.0


def test_fedoru_baseline_drops_low_days_before_mu_and_sigma():
    assert batch.fedoru_baseline([100] * 6) is None            # not enough history
    history = [100, 104, 96, 102, 98, 100, 0, 101]                # one day without data
    mu, sigma = batch.fedoru_baseline(history)
    assert 99 < mu < 101 and sigma < 3                            # the empty day is dropped
    p = batch.count_parameters(history, 7)
    assert p["day_min"] == round(mu - 3 * sigma, 2) and p["row_count_max"] > 7 * mu > p["row_count_min"]
    assert batch.count_parameters([], 7)["day_min"] == 0


@pytest.mark.parametrize("name,days,history,fails", [
    ("DAY_COUNT_LOW", [100, 98, 5], [100, 102, 98, 101, 99, 100, 97], True),
    ("DAY_COUNT_LOW", [100, 98, 97], [100, 102, 98, 101, 99, 100, 97], False),
    ("ROW_COUNT", [200, 210, 190], [100, 102, 98, 101, 99, 100, 97], True),
    ("ROW_COUNT", [100, 98, 101], [100, 102, 98, 101, 99, 100, 97], False),
    ("DAY_COUNT_LOW", [100, 98, 5], [100, 102], False),           # no history: no bound
])
def test_batch_expectations_against_recent_days(pandas_source, name, days, history, fails):
    per_day = {date(2026, 11, 1) + timedelta(days=i): n for i, n in enumerate(days)}
    o = _run(pandas_source, batch.days_frame(per_day), expectations.BATCH_SUITE,
             batch.count_parameters(history, len(days)), only={name})[name]
    assert o["success"] is not fails and o["error"] is None, o


def test_validate_quality_in_memory_agrees_with_the_per_visit_rules(tmp_path):
    from rpu import synth
    from rpu.synth.daily import _corrupt as corrupt

    visits = synth.visits_for_day(ETAB, date(2026, 11, 1), 3, 60)
    path = tmp_path / "q.xml"
    synth.write_file(path, ETAB, [corrupt(v, case) for v, case in zip(visits, synth.QUALITY_CASES)]
                     + visits[len(synth.QUALITY_CASES):], extract=datetime(2026, 11, 2, 3), period=(date(2026, 11, 1), date(2026, 11, 1)))
    report, runs = gx.check_file_quality(path)
    assert report.flags, "the crafted file carries quality problems"
    results = {o["name"]: o for r in runs for o in r["results"]}
    assert set(results) == set(NAMES)
    for rule in (r for r, (level, _) in RULES.items() if level == QUALITY):
        assert (results[rule]["unexpected_count"] or 0) == report.flags.get(rule, 0), rule


def test_validate_quality_streams_in_chunks_with_the_counts_of_the_frame_path(tmp_path):
    """`rpu validate --quality` streams the visits into a temporary SQLite file, `chunk` rows at a time: a file of
    several chunks gives every expectation the counts and verdict of the whole-file DataFrame path."""
    vs = _diverse() + _crafted("COMPLETENESS_MOTIF") + _crafted("CP_FORMAT")
    report, frame = _frame(tmp_path, vs, "big.xml")
    assert len(frame) > 3 * 7
    framed = {o["name"]: o for o in gx.validate_frames(frame, dict(sorted(report.per_day.items())))[0]["results"]}
    _, runs = gx.check_file_quality(tmp_path / "big.xml", chunk=7)
    [visit_run] = [r for r in runs if r["suite"] == expectations.VISIT_SUITE]
    assert visit_run["engine"] == "sql"
    streamed = {o["name"]: o for o in visit_run["results"]}
    assert set(streamed) == set(framed) == set(VISIT_NAMES)
    keys = ("success", "element_count", "unexpected_count", "missing_count")
    assert {n: {k: o[k] for k in keys} for n, o in streamed.items()} == \
        {n: {k: o[k] for k in keys} for n, o in framed.items()}
    for n, o in streamed.items():
        assert o["unexpected_percent"] == pytest.approx(framed[n]["unexpected_percent"]), n
    assert any(not o["success"] for o in streamed.values())


def test_validate_cli_adds_a_quality_section(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RPU_REGIONS_DIR", raising=False)
    vs = _clean()
    vs[0]["SEXE"] = "X"
    (tmp_path / "a.xml").write_bytes(rpu_file(vs))
    assert main(["validate", "--quality", "--json", "--region", "demo", str(tmp_path / "a.xml")]) == 0
    d = json.loads(capsys.readouterr().out)
    by = {q["name"]: q for q in d["quality"]}
    assert set(by) == set(NAMES)
    assert {k: by["SEXE_DOMAIN"][k] for k in ("success", "unexpected_count", "unexpected_percent")} == \
        {"success": False, "unexpected_count": 1, "unexpected_percent": 10.0}
    assert by["CP_FORMAT"]["success"] is True and by["CP_FORMAT"]["unexpected_count"] == 0
    assert main(["validate", "--quality", str(tmp_path / "a.xml")]) == 0
    assert "[SEXE_DOMAIN] non satisfaite : 1 (10.0 %)" in capsys.readouterr().out
    # a rejected file has no quality section
    (tmp_path / "b.xml").write_bytes(rpu_file(vs)[:-40])
    assert main(["validate", "--quality", "--json", str(tmp_path / "b.xml")]) == 1
    assert json.loads(capsys.readouterr().out)["quality"] is None


# --- on PostgreSQL: the gate ------------------------------------------------------------------------------

def q(db, sql, *params):
    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def ingest(region, db, tmp_path, visits, name="f.xml", **kw):
    path = tmp_path / name
    path.write_bytes(rpu_file(visits, **{k: kw.pop(k) for k in ("debut", "fin", "extract") if k in kw}))
    return intake.ingest_path(region, db, path, sender=ETAB, **kw)


def _diverse() -> list[dict]:
    """Visits covering every column's edge cases (dots, case, lists, seconds, unreadable dates, coherence)."""
    vs = [_crafted(n)[5] for n in VISIT_NAMES if not n.startswith("COMPLETENESS_")]
    vs += [visit(DP="r07.4", LISTE_DA=["i10", "R53 +1", "E11.9"], LISTE_ACTES=[]),
           visit(ENTREE="01/11/2026 10:12:33", SORTIE="01/11/2026 11:00:07", NAISSANCE="01/11/2026"),
           visit(NAISSANCE="02/11/2026"), visit(CP="", COMMUNE="", SEXE="", MODE_ENTREE="", PROVENANCE="",
                                                 TRANSPORT="", TRANSPORT_PEC="", MOTIF="", GRAVITE="", DP="",
                                                 LISTE_DA=[], LISTE_ACTES=[], SORTIE="", MODE_SORTIE="",
                                                 DESTINATION="", ORIENT=""),
           visit(MODE_SORTIE="9", DESTINATION="1", ORIENT="REA"), visit(MODE_ENTREE="0", PROVENANCE="1"),
           visit(NAISSANCE="01/11/1906"), visit(NAISSANCE="02/11/1905")]
    return vs


def _norm(rows):
    return Counter(tuple(round(x, 6) if isinstance(x, float) else x for x in r) for r in rows)


def test_the_sql_batch_is_the_python_batch(db, region, tmp_path):
    """quality_batch_view.sql (gate) and batch_values (rpu validate --quality) give the same rows."""
    vs = _diverse()
    r = ingest(region, db, tmp_path, vs, quality_gate=False)
    _, frame = _frame(tmp_path, vs, "same.xml")
    with store.connection(db) as conn, gate._batch_view(conn, r["file_id"]) as view:
        cur = conn.execute(f"SELECT * FROM rpu_quality.{view}")
        assert tuple(c.name for c in cur.description) == batch.BATCH_COLUMNS
        sql_rows = [tuple(float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in row)
                    for row in cur.fetchall()]
    py_rows = [tuple(None if isinstance(x, float) and math.isnan(x) else (float(x) if isinstance(x, int) else x)
                     for x in row) for row in frame.itertuples(index=False, name=None)]
    assert _norm(sql_rows) == _norm(py_rows)
    assert not q(db, "SELECT viewname FROM pg_views WHERE schemaname = 'rpu_quality'")   # dropped afterwards


def test_gate_sql_results_equal_the_in_memory_ones_and_the_per_visit_flags(db, region, tmp_path):
    vs = _diverse()
    r = ingest(region, db, tmp_path, vs)
    _, frame = _frame(tmp_path, vs, "same.xml")
    memory = {o["name"]: o for run in gx.validate_frames(frame, {date(2026, 11, 1): len(vs)}) for o in
              run["results"]}
    stored = dict(q(db, "SELECT expectation, unexpected_count FROM quality_result"))
    assert set(stored) == set(NAMES)
    for name in VISIT_NAMES:
        assert stored[name] == memory[name]["unexpected_count"], name
    flags = r["flags"]
    for rule in (x for x, (level, _) in RULES.items() if level == QUALITY):
        assert stored[rule] == flags.get(rule, 0), rule


def test_gate_stores_summary_results_and_the_receipt_lists_failures_in_plain_words(db, region, tmp_path):
    vs = _clean()
    vs[0]["SEXE"] = "X"
    vs[1]["SEXE"] = "9"
    r = ingest(region, db, tmp_path, vs)
    runs = q(db, "SELECT suite, suite_version, status, engine, error, duration_s > 0 FROM quality_run ORDER BY suite")
    assert runs == [("rpu_batch", expectations.load("rpu_batch")["meta"]["version"], "passed", "sql", None, True),
                    ("rpu_visit", expectations.load("rpu_visit")["meta"]["version"], "failed", "sql", None, True)]
    [(count, pct, details, blocking)] = q(db, "SELECT unexpected_count, unexpected_percent, details, blocking "
                                             "FROM quality_result WHERE expectation = 'SEXE_DOMAIN'")
    assert (count, pct, blocking) == (2, 20.0, False)
    assert sorted(details["partial_unexpected_list"]) == ["9", "X"]          # SUMMARY details of a failure
    assert q(db, "SELECT count(*) FROM quality_result WHERE success") == [(len(NAMES) - 1,)]
    assert r["quality"]["status"] == "failed" and not r["quality"]["quarantined"]
    text = intake.receipt_text(r)
    assert "[SEXE_DOMAIN] valeur de SEXE hors nomenclature (M, F, I) : 2 passage(s) (20,0 %)" in text
    assert "QUARANTAINE" not in text and "BLOQUANT" not in text
    assert q(db, "SELECT count(*) FROM quality_quarantine") == [(0,)]
    # a clean file: one line
    r = ingest(region, db, tmp_path, _clean(), name="g.xml", extract="03/11/2026 03:00:00")
    assert "tous les indicateurs sont atteints" in intake.receipt_text(r)


def test_a_big_batch_gets_fresh_planner_statistics_first(db, region, tmp_path):
    reltuples = "SELECT reltuples FROM pg_class WHERE oid = 'visit'::regclass"
    assert q(db, reltuples) == [(-1,)]           # never analyzed: the planner knows nothing of the batch
    ingest(region, db, tmp_path, _clean())
    assert q(db, reltuples) == [(10,)]


def test_no_load_of_the_establishment_changes_the_batch_while_the_gate_reads_it(db, region, tmp_path):
    import threading

    path = tmp_path / "f.xml"
    path.write_bytes(rpu_file(_clean()))
    loaded = threading.Event()

    def load():
        intake.ingest_path(region, db, path, sender=ETAB, quality_gate=False)
        loaded.set()

    with store.connection(db) as conn, gate._establishment_lock(conn, ETAB):   # what run_gate holds
        loader = threading.Thread(target=load)
        loader.start()
        assert not loaded.wait(1.5)              # loader.load_file waits for the same lock
    loader.join(60)
    assert loaded.is_set()


def _exported(db, etab=ETAB, start=date(2026, 10, 26), end=date(2026, 11, 1)) -> dict[str, int]:
    """Rows each export would write, and the days a file may declare (provided, not held back)."""
    with store.connection(db) as conn:
        params = {"etab": etab, "ordre": 0, "start": start, "end": end, "etabs": [etab]}
        days = sum(not held for *_, held in conn.execute(store.query("export_days"), params))
    return exported(db, etab, start, end) | {"days": days}


def test_a_blocking_failure_quarantines_the_batch_until_release(db, region, tmp_path, capsys):
    region = region.adjusted(quality={"blocking": ("SEXE_DOMAIN", "COMPLETENESS_MOTIF")})
    vs = _clean()
    vs[0]["SEXE"] = "X"
    r = ingest(region, db, tmp_path, vs)
    assert r["status"] == "accepted" and r["visits_loaded"] == 10          # kept, never rejected
    assert r["quality"]["quarantined"] and r["quality"]["quarantine"]["expectations"] == ["SEXE_DOMAIN"]
    text = intake.receipt_text(r)
    assert "— BLOQUANT" in text and "LOT EN QUARANTAINE (SEXE_DOMAIN)" in text
    assert _exported(db) == everywhere(0) | {"days": 0}
    assert q(db, "SELECT count(*) FROM visit") == [(10,)]
    # another establishment's data still goes out
    other = region.adjusted(quality={"blocking": ()})
    path = tmp_path / "other.xml"
    path.write_bytes(rpu_file(_clean(), finess="990000135"))
    intake.ingest_path(other, db, path, sender="990000135")
    assert _exported(db, "990000135")["oscour"] == 10

    fid = r["file_id"]
    assert main(["release", "--region", "demo", "--db", db, "--file-id", str(fid), "--by", "oru.operator",
                 "--reason", "SEXE X confirmé par le service"]) == 0
    assert "released on" in capsys.readouterr().out
    assert _exported(db) == everywhere(10) | {"days": 7}
    [(by, at, why)] = q(db, "SELECT released_by, released_at, release_reason FROM quality_quarantine "
                            "WHERE file_id = %s", fid)
    assert by == "oru.operator" and at is not None and why == "SEXE X confirmé par le service"
    # idempotent: a second release changes nothing
    assert main(["release", "--region", "demo", "--db", db, "--file-id", str(fid), "--by", "someone.else",
                 "--reason", "autre"]) == 0
    assert "already released" in capsys.readouterr().out
    assert q(db, "SELECT released_by, released_at, release_reason FROM quality_quarantine WHERE file_id = %s",
             fid) == [(by, at, why)]
    with store.connection(db) as conn:
        assert "Quarantaine levée" in intake.receipt_text(intake.receipt_data(conn, region, fid))
    # a file never held cannot be released
    assert main(["release", "--region", "demo", "--db", db, "--file-id", "999"]) == 1
    assert "not in quarantine" in capsys.readouterr().err


def test_a_non_blocking_failure_is_forwarded(db, region, tmp_path):
    region = region.adjusted(quality={"blocking": ("DP_FORMAT",)})
    vs = _clean()
    vs[0]["SEXE"] = "X"
    r = ingest(region, db, tmp_path, vs)
    assert r["quality"]["status"] == "failed" and not r["quality"]["quarantined"]
    assert _exported(db)["oscour"] == 10


def test_a_crash_of_gx_is_recorded_and_the_load_stays(db, region, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("GX exploded")

    monkeypatch.setattr(gx, "visit_suite_per_file", boom)   # the run's batches at once, then each alone
    monkeypatch.setattr(gx, "visit_suite_sql", boom)
    r = ingest(region, db, tmp_path, _clean())
    assert r["status"] == "accepted" and q(db, "SELECT count(*) FROM visit") == [(10,)]
    assert r["quality"]["status"] == "error" and "GX exploded" in r["quality"]["error"]
    assert not r["quality"]["quarantined"]
    assert "non effectué (incident technique" in intake.receipt_text(r)
    assert q(db, "SELECT suite, status FROM quality_run ORDER BY suite") == [("rpu_batch", "error"),
                                                                             ("rpu_visit", "error")]
    assert not q(db, "SELECT viewname FROM pg_views WHERE schemaname = 'rpu_quality'")
    # with blocking expectations configured, a batch the gate could not judge is held
    held = region.adjusted(quality={"blocking": ("SEXE_DOMAIN",)})
    r = ingest(held, db, tmp_path, _clean(), name="g.xml", extract="03/11/2026 03:00:00")
    assert r["quality"]["quarantined"] and r["quality"]["quarantine"]["expectations"] == ["GATE_ERROR"]


def test_an_unknown_blocking_name_is_a_gate_error(db, region, tmp_path):
    r = ingest(region.adjusted(quality={"blocking": ("SEXE_DOMAINE",)}), db, tmp_path, _clean())
    assert r["quality"]["status"] == "error" and "SEXE_DOMAINE" in r["quality"]["error"]


def test_the_gate_runs_on_a_rerun_after_a_crash_between_load_and_gate(db, region, tmp_path):
    path = tmp_path / "f.xml"
    path.write_bytes(rpu_file(_clean()))
    r = intake.ingest_path(region, db, path, sender=ETAB, remote_path="/x/inbox/f.xml", quality_gate=False)
    assert r["quality"] is None and q(db, "SELECT count(*) FROM quality_run") == [(0,)]
    r = intake.ingest_path(region, db, path, sender=ETAB, remote_path="/x/inbox/f.xml")
    assert r["quality"]["status"] == "passed" and q(db, "SELECT count(*) FROM received_file") == [(1,)]
    intake.ingest_path(region, db, path, sender=ETAB, remote_path="/x/inbox/f.xml")
    assert q(db, "SELECT count(*) FROM quality_run") == [(2,)]                # once


def test_one_gate_judges_every_pending_batch_each_on_its_own(db, region, tmp_path):
    """Loads leave their batches gate pending (not exported); the run's one gate judges each file on its own
    batch: a blocking failure in one file quarantines that file only."""
    held = region.adjusted(quality={"blocking": ("SEXE_DOMAIN",)})
    bad = _clean()
    bad[0]["SEXE"] = "X"
    others = {"990000135": _clean(), "990000143": _clean()}
    r_bad = ingest(held, db, tmp_path, bad, name="bad.xml", quality_gate=False)
    r_others = {}
    for finess, vs in others.items():
        path = tmp_path / f"{finess}.xml"
        path.write_bytes(rpu_file(vs, finess=finess))
        r_others[finess] = intake.ingest_path(held, db, path, sender=finess, quality_gate=False)
    assert all(r["quality"] is None for r in (r_bad, *r_others.values()))
    assert "Contrôle qualité FEDORU : en cours" in intake.receipt_text(r_bad)
    assert q(db, "SELECT count(*) FROM received_file WHERE gate_pending") == [(3,)]
    assert _exported(db)["oscour"] == 0 and _exported(db, "990000135")["oscour"] == 0   # not before the gate
    judged = intake.gate_run(held, db)
    assert sorted((j["file"], j["quality"], j["quarantined"]) for j in judged) == [
        ("990000135.xml", "passed", False), ("990000143.xml", "passed", False), ("bad.xml", "failed", True)]
    assert q(db, "SELECT file_id, count(*) FROM quality_run GROUP BY file_id ORDER BY 1") == [
        (r_bad["file_id"], 2), (r_others["990000135"]["file_id"], 2), (r_others["990000143"]["file_id"], 2)]
    assert q(db, "SELECT file_id FROM quality_quarantine") == [(r_bad["file_id"],)]
    assert _exported(db)["oscour"] == 0
    assert _exported(db, "990000135")["oscour"] == 10 and _exported(db, "990000143")["oscour"] == 10
    assert q(db, "SELECT count(*) FROM received_file WHERE gate_pending") == [(0,)]
    assert intake.gate_run(held, db) == []                                   # nothing left: no second judgement
    assert not q(db, "SELECT viewname FROM pg_views WHERE schemaname = 'rpu_quality'")


def test_a_run_judged_at_once_gives_what_gx_gives_on_each_batch_alone(db, region, tmp_path):
    """gx.visit_suite_per_file (the run's batches in one grouped query, GX's verdict per file) against GX on each
    file's batch alone, outcome by outcome (success, counts, percentages), on batches where each expectation of
    the suite fails in turn, next to clean and diverse batches and to files whose row conditions leave no row."""
    sets = [_crafted(n) for n in VISIT_NAMES] + [_clean(), _diverse(), [visit(MODE_SORTIE="", DESTINATION="",
                                                                              ORIENT="")]]
    etabs = ["990000127", "990000135", "990000143"]
    session = gate._Session(db)
    compared = failed = 0
    try:
        for start in range(0, len(sets), len(etabs)):
            ids = []
            for finess, vs in zip(etabs, sets[start:start + len(etabs)]):
                path = tmp_path / f"{finess}-{start}.xml"
                path.write_bytes(rpu_file(vs, finess=finess))
                ids.append(intake.ingest_path(region, db, path, sender=finess, quality_gate=False)["file_id"])
            with store.connection(db) as conn:
                with gate._run_view(conn, ids) as view:
                    at_once = gx.visit_suite_per_file(session.sql_source(), view, ids)
                for fid in ids:
                    with gate._batch_view(conn, fid) as view:
                        alone = gx.table_batch(session.sql_source(), view).validate(
                            gx.gx_suite(expectations.VISIT_SUITE), result_format=dict(gx.BASIC))
                    alone = {o["name"]: o for o in map(gx._outcome, alone.results)}
                    assert [o["name"] for o in at_once[fid]] == VISIT_NAMES
                    for o in at_once[fid]:
                        assert o == alone[o["name"]], (fid, o["name"])
                        compared += 1
                        failed += not o["success"]
    finally:
        session.close()
    assert compared == len(sets) * len(VISIT_NAMES) and failed >= len(VISIT_NAMES)   # every one failed somewhere


def test_a_runs_day_counts_judged_at_once_give_what_gx_gives_on_each_file_alone(db, region, tmp_path, caplog):
    """gx.batch_suite_per_file (rpu_batch: every file's day counts in one grouped query, each file's own
    parameters, GX's verdict per file) against GX on each file's day counts alone, outcome by outcome, with
    parameters that make each expectation fail in turn, pass, or have no bound (no history); and the same
    verdicts and counts as GX's pandas engine on the same days (the engine this gate used before)."""
    import logging

    day_sets = [_clean(),                                                          # 10 visits on 01/11
                [visit(ENTREE=f"{d:02d}/11/2026 10:00", SORTIE=f"{d:02d}/11/2026 11:00") for d in (1, 1, 1)],
                [visit(ENTREE=f"{26 + i % 6}/10/2026 10:{i:02d}", SORTIE=f"{26 + i % 6}/10/2026 11:00")
                 for i in range(30)]]
    bounds = [{"day_min": 0, "row_count_min": 0, "row_count_max": None},            # no history: no bound
              {"day_min": 2.5, "row_count_min": 1.0, "row_count_max": 1000.0},      # days below 2.5: fail
              {"day_min": 0, "row_count_min": 50.0, "row_count_max": 60.0},         # too few in all: fail
              {"day_min": 0, "row_count_min": 0, "row_count_max": 5.0},             # too many: fail
              {"day_min": 0.5, "row_count_min": 2.0, "row_count_max": 400.0}]
    ids = []
    for i, (finess, vs) in enumerate(zip(["990000127", "990000135", "990000143"], day_sets)):
        path = tmp_path / f"{finess}.xml"
        path.write_bytes(rpu_file(vs, finess=finess))
        ids.append(intake.ingest_path(region, db, path, sender=finess, quality_gate=False)["file_id"])
    compared = 0
    failed = set()
    for b in bounds:
        session = gate._Session(db)      # GX's assets are named after the views: a session per set of views
        try:
            ctx = session.context()
            params = {fid: dict(b, history_days=0) for fid in ids}
            with store.connection(db) as conn:
                with gate._days_view(conn, {fid: p["day_min"] for fid, p in params.items()}) as view:
                    at_once = gx.batch_suite_per_file(session.sql_source(), view, params)
                for fid in ids:
                    with gate._days_view(conn, {fid: b["day_min"]}, alone=True) as view:
                        alone = gx.table_batch(session.sql_source(), view).validate(
                            gx.gx_suite(expectations.BATCH_SUITE), result_format=dict(gx.BASIC),
                            expectation_parameters=params[fid])
                        days = {d: n for d, n in conn.execute(f"SELECT day, visits FROM rpu_quality.{view}")}
                    alone = {o["name"]: o for o in map(gx._outcome, alone.results)}
                    in_memory = {o["name"]: o for o in gx.pandas_run(ctx, expectations.BATCH_SUITE,
                                                                      batch.days_frame(days), params[fid])["results"]}
                    assert [o["name"] for o in at_once[fid]] == list(alone)
                    for o in at_once[fid]:
                        assert o == alone[o["name"]], (fid, b, o["name"])
                        pandas = in_memory[o["name"]]
                        assert (o["success"], o["unexpected_count"], o["observed_value"]) == (
                            pandas["success"], pandas["unexpected_count"], pandas["observed_value"]), (fid, b)
                        compared += 1
                        if not o["success"]:
                            failed.add(o["name"])
        finally:
            session.close()
    names = [e["meta"]["name"] for e in expectations.load(expectations.BATCH_SUITE)["expectations"]]
    assert compared == len(bounds) * len(ids) * len(names) and failed == set(names)
    with caplog.at_level(logging.WARNING, logger="rpu.quality.gate"):
        assert len(intake.gate_run(region, db)) == len(ids)
    assert not [r for r in caplog.records if "not judged at once" in r.getMessage()]   # the gate's own path
    assert q(db, "SELECT DISTINCT engine FROM quality_run") == [("sql",)]


def test_one_gate_bounds_each_files_day_counts_by_its_own_establishments_history(db, region, tmp_path):
    """The day-count bounds come from each establishment's own recent days (one query for the whole gate): a day
    far below its establishment's usual count fails DAY_COUNT_LOW for that file only, the other establishment's
    file, smaller every day, passes with its own bounds."""
    def days(finess, first, last, per_day, low=None):
        vs = [visit(ENTREE=f"{d:02d}/10/2026 {8 + i % 10:02d}:{i % 60:02d}", SORTIE=f"{d:02d}/10/2026 20:00")
              for d in range(first, last + 1) for i in range(1 if d == low else per_day)]
        path = tmp_path / f"{finess}-{first}.xml"
        path.write_bytes(rpu_file(vs, finess=finess, debut=f"{first:02d}/10/2026", fin=f"{last:02d}/10/2026",
                                  extract=f"{last + 1:02d}/10/2026 03:00:00"))
        return intake.ingest_path(region, db, path, sender=finess, quality_gate=False)["file_id"]

    for finess, n in (("990000127", 20), ("990000135", 5)):
        days(finess, 5, 19, n)                                   # two weeks of history each
    a = days("990000127", 20, 26, 20, low=23)                    # one day with 1 visit instead of ~20
    b = days("990000135", 20, 26, 5)                             # 5 a day: low for 127, usual for 135
    intake.gate_run(region, db)
    runs = {fid: (status, params) for fid, status, params in q(
        db, "SELECT file_id, status, parameters FROM quality_run WHERE suite = 'rpu_batch'")}
    assert runs[a][0] == "failed" and runs[b][0] == "passed"
    assert (runs[a][1]["history_days"], runs[a][1]["mu"]) == (15, 20.0)
    assert (runs[b][1]["history_days"], runs[b][1]["mu"]) == (15, 5.0)
    failed = dict(q(db, "SELECT r.expectation, r.unexpected_count FROM quality_result r JOIN quality_run u "
                        "ON u.id = r.run_id WHERE u.file_id = %s AND u.suite = 'rpu_batch' AND NOT r.success", a))
    assert failed["DAY_COUNT_LOW"] == 1                          # that day alone
    [(details,)] = q(db, "SELECT r.details FROM quality_result r JOIN quality_run u ON u.id = r.run_id "
                         "WHERE u.file_id = %s AND r.expectation = 'DAY_COUNT_LOW'", a)
    assert details["partial_unexpected_list"] == [1]             # its value, from GX's second pass on its days


def test_rpu_ingest_of_several_files_runs_one_gate_after_all_of_them(db, tmp_path, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="rpu.quality.gate")
    paths = []
    for i, finess in enumerate(("990000127", "990000135", "990000143")):
        paths.append(tmp_path / f"{finess}.xml")
        paths[-1].write_bytes(rpu_file(_clean(), finess=finess))
    assert main(["ingest", "--region", "demo", "--db", db, *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert out.count("quality gate: 3 batch(es) judged") == 1
    gates = [r.getMessage() for r in caplog.records if r.getMessage().startswith("quality gate: ")]
    assert len(gates) == 1 and gates[0].startswith("quality gate: 3 batch(es) judged")
    assert q(db, "SELECT count(DISTINCT file_id), count(*) FROM quality_run") == [(3, 6)]


def test_rejected_duplicate_and_empty_files(db, region, tmp_path):
    bad = ingest(region, db, tmp_path, _clean(), name="bad.xml", debut=None, fin=None, extract="")
    assert bad["status"] == "rejected" and bad["quality"] is None
    ok = ingest(region, db, tmp_path, _clean(), name="ok.xml")
    dup = ingest(region, db, tmp_path, _clean(), name="ok.xml")
    assert dup["status"] == "duplicate" and dup["quality"] is None and ok["quality"]["status"] == "passed"
    empty = ingest(region, db, tmp_path, [], name="empty.xml", extract="05/11/2026 03:00:00")
    assert empty["quality"]["status"] == "skipped" and "sans objet" in intake.receipt_text(empty)
    assert q(db, "SELECT count(*) FROM quality_run WHERE file_id IN (%s, %s)", bad["file_id"], dup["file_id"]) \
        == [(0,)]


def test_day_counts_are_judged_against_the_establishments_recent_days(db, region, tmp_path):
    history = [visit(ENTREE=f"{d:02d}/10/2026 {8 + i % 12:02d}:{i:02d}", SORTIE=f"{d:02d}/10/2026 21:00")
               for d in range(1, 15) for i in range(20)]
    ingest(region, db, tmp_path, history, name="h.xml", debut="01/10/2026", fin="14/10/2026",
           extract="15/10/2026 03:00:00")
    low = [visit(ENTREE=f"15/10/2026 {8 + i % 12:02d}:{i:02d}", SORTIE="15/10/2026 21:00") for i in range(20)]
    low += [visit(ENTREE=f"16/10/2026 {8 + i:02d}:00", SORTIE="16/10/2026 21:00") for i in range(2)]
    r = ingest(region, db, tmp_path, low, name="low.xml", debut="15/10/2026", fin="16/10/2026",
               extract="17/10/2026 03:00:00")
    failed = {f["name"]: f for f in r["quality"]["failed"]}
    assert failed["DAY_COUNT_LOW"]["unexpected_count"] == 1 and failed["DAY_COUNT_LOW"]["unit"] == "jour(s)"
    assert failed["ROW_COUNT"]["observed_value"] == 22
    [(params,)] = q(db, "SELECT parameters FROM quality_run WHERE suite = 'rpu_batch' AND file_id = %s",
                    r["file_id"])
    assert params["history_days"] == 14 and params["day_min"] == 20 and params["mu"] == 20
    assert "[DAY_COUNT_LOW] jour dont le nombre de passages est anormalement bas" in intake.receipt_text(r)


def test_failed_since_tells_the_watch_which_files_failed(db, region, tmp_path, monkeypatch):
    since = datetime.now().astimezone() - timedelta(minutes=1)
    ingest(region, db, tmp_path, _clean(), name="clean.xml")
    vs = _clean()
    vs[0]["SEXE"] = "X"
    bad = ingest(region.adjusted(quality={"blocking": ("SEXE_DOMAIN",)}), db, tmp_path, vs, name="bad.xml",
                 extract="03/11/2026 03:00:00")
    monkeypatch.setattr(gx, "visit_suite_per_file", lambda *a: 1 / 0)   # at once, then each alone
    monkeypatch.setattr(gx, "visit_suite_sql", lambda *a: 1 / 0)
    crashed = ingest(region, db, tmp_path, _clean(), name="crash.xml", extract="04/11/2026 03:00:00")
    with store.connection(db) as conn:
        found = results.failed_since(conn, since)
        assert results.failed_since(conn, datetime.now().astimezone() + timedelta(minutes=1)) == []
    assert [f["file"] for f in found] == ["bad.xml", "crash.xml"]
    b, c = found
    assert b["file_id"] == bad["file_id"] and b["etab"] == ETAB and b["quarantined"] and b["status"] == "failed"
    assert [(x["name"], x["blocking"], x["unexpected_count"]) for x in b["failed"]] == [("SEXE_DOMAIN", True, 1)]
    assert b["failed"][0]["description"] == "valeur de SEXE hors nomenclature (M, F, I)"
    assert c["file_id"] == crashed["file_id"] and c["status"] == "error" and "ZeroDivisionError" in c["error"]
    assert c["failed"] == [] and not c["quarantined"]


def test_stored_results_for_reports(db, region, tmp_path):
    vs = _clean()
    vs[0]["SEXE"] = "X"
    ingest(region, db, tmp_path, vs)
    today = date.today()
    with store.connection(db) as conn:
        rows = results.stored_results(conn, today - timedelta(days=1), today + timedelta(days=1))
        assert results.stored_results(conn, today - timedelta(days=1), today + timedelta(days=1), "990000135") == []
    assert len(rows) == len(NAMES)
    sexe = next(r for r in rows if r["expectation"] == "SEXE_DOMAIN")
    assert (sexe["etab"], sexe["suite"], sexe["success"], sexe["unexpected_count"]) == (ETAB, "rpu_visit", False, 1)


def test_the_gate_ahead_judges_in_its_own_process_what_gate_run_would(db, region, tmp_path):
    """`rpu ingest`'s gate, forked before the loads (it imports GX while they run): the same verdicts as the
    in-process gate."""
    held = region.adjusted(quality={"blocking": ("SEXE_DOMAIN",)})
    bad = _clean()
    bad[0]["SEXE"] = "X"
    with gate_ahead.GateAhead(held, db) as ahead:
        child = ahead._child
        assert child is not None and child.is_alive() and child.pid != os.getpid()
        r_bad = ingest(held, db, tmp_path, bad, name="bad.xml", quality_gate=False)
        path = tmp_path / "ok.xml"
        path.write_bytes(rpu_file(_clean(), finess="990000135"))
        intake.ingest_path(held, db, path, sender="990000135", quality_gate=False)
        judged = ahead.run()
    assert not child.is_alive() and child.exitcode == 0
    assert sorted((j["file"], j["quality"], j["quarantined"]) for j in judged) == [
        ("bad.xml", "failed", True), ("ok.xml", "passed", False)]
    assert q(db, "SELECT file_id FROM quality_quarantine") == [(r_bad["file_id"],)]
    assert q(db, "SELECT count(*) FROM received_file WHERE gate_pending") == [(0,)]


def test_the_gate_ahead_killed_the_gate_runs_here_and_nothing_pending_stops_it(db, region, tmp_path):
    import signal

    with gate_ahead.GateAhead(region, db) as ahead:        # nothing loaded: stopped without judging anything
        child = ahead._child
        assert ahead.run() == []
    assert not child.is_alive()
    with gate_ahead.GateAhead(region, db) as ahead:
        child = ahead._child
        ingest(region, db, tmp_path, _clean(), quality_gate=False)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        judged = ahead.run()                          # judged here, after the child's death
    assert [(j["file"], j["quality"]) for j in judged] == [("f.xml", "passed")]
    assert q(db, "SELECT count(*) FROM received_file WHERE gate_pending") == [(0,)]
