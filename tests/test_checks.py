"""Acceptance and quality rules through check_file, on files built item by item."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from rpu import rpu_format as F
from rpu.checks import VISIT_COLUMNS, check_file
from rpu.config import PROJECT_DIR, get_region
from rpu.problems import FILE, INTAKE_RULES, QUALITY, RULES, VISIT, WARNING, Problem
from support.rpu_xml import rpu_file, visit


@pytest.fixture(scope="module")
def region():
    return get_region("demo", PROJECT_DIR / "config" / "regions")


class Sink:
    """Collects what check_file hands to the loader."""

    def __init__(self):
        self.rows: list[dict] = []
        self.rejects: list[tuple] = []

    def visit(self, row):
        assert len(row) == len(VISIT_COLUMNS)
        self.rows.append(dict(zip(VISIT_COLUMNS, row)))

    def rejected(self, raw, problem):
        self.rejects.append((raw, problem))


def check(tmp_path: Path, data: bytes, *, region=None, sender=None, name="rpu.xml"):
    path = tmp_path / name
    path.write_bytes(data)
    sink = Sink()
    report = check_file(path, region, sender, sink)
    return report, sink


def flags_of(tmp_path, visits, **kw) -> list[list[str]]:
    """The quality flags of each visit (all must be stored)."""
    report, sink = check(tmp_path, rpu_file(visits, **kw))
    assert report.accepted and report.visits_rejected == 0, report.errors
    assert [r["idx"] for r in sink.rows] == list(range(1, len(visits) + 1))
    return [r["flags"] for r in sink.rows]


# --- one trigger per rule -----------------------------------------------------------------------------------------


def _truncated():
    data = rpu_file([visit(), visit()])
    return data[: len(data) // 2]


def _doctype():
    return rpu_file([visit()]).replace(b"<OSCOUR>", b'<!DOCTYPE OSCOUR [<!ENTITY e "x">]>\n<OSCOUR>')


def _schema():
    return rpu_file([visit(), visit()]).replace(b"<GRAVITE>2</GRAVITE>", b"<GRAVITE><X/></GRAVITE>")


def _huge_visit():
    # a regional element of many modest children: no item is over the limit, the visit is
    extra = "<HMED>" + "".join(f"<L>{'x' * 1000}</L>" for _ in range(F.MAX_VISIT_BYTES // 500)) + "</HMED>"
    return rpu_file([visit(), visit()]).replace(b"<ORIENT></ORIENT></PATIENT>",
                                                f"<ORIENT></ORIENT>{extra}</PATIENT>".encode(), 1)


# rule → (file bytes, region: None, "demo" or "tiny" (the demo with a size limit just below the file), sender)
FILE_AND_VISIT_TRIGGERS = {
    "FILE_TOO_LARGE": (lambda: rpu_file([visit()]), "tiny", None),
    "NOT_WELL_FORMED": (_truncated, None, None),
    "DOCTYPE_FORBIDDEN": (_doctype, None, None),
    "SCHEMA": (_schema, None, None),
    "FINESS_MISSING": (lambda: rpu_file([visit()], finess=None), None, None),
    "FINESS_UNKNOWN": (lambda: rpu_file([visit()], finess="990000226"), "demo", None),
    "FINESS_NOT_SENDER": (lambda: rpu_file([visit()], finess="990000119"), "demo", "990000101"),
    "EXTRACT_MISSING": (lambda: rpu_file([visit()], extract=None), None, None),
    "ENTREE_MISSING": (lambda: rpu_file([visit(), visit(ENTREE="")]), None, None),
    "ENTREE_INVALID": (lambda: rpu_file([visit(), visit(ENTREE="31/11/2026 10:00")]), None, None),
    "ENTREE_OUTSIDE_PERIOD": (lambda: rpu_file([visit(), visit(ENTREE="02/11/2026 00:00")]), None, None),
    "ORDRE_OUT_OF_RANGE": (lambda: rpu_file([visit()], ordre="40000"), None, None),
    "VISIT_TOO_LARGE": (_huge_visit, None, None),
    "ITEM_TOO_LONG": (lambda: rpu_file([visit(), visit()]).replace(
        b"<ORIENT></ORIENT></PATIENT>\n</PASSAGES>",
        f"<ORIENT></ORIENT><HMED>{'x' * (F.MAX_ITEM_CHARS + 1)}</HMED></PATIENT>\n</PASSAGES>".encode()), None, None),
}

WARNING_TRIGGERS = {
    "ENCODING": dict(visits=[visit(COMMUNE="Évry")], declaration=False, encoding="WINDOWS-1252"),
    "PERIOD_INVALID": dict(visits=[visit()], debut="2026-10-26"),
    "NO_VISIT": dict(visits=[]),
    "ORDRE_INVALID": dict(visits=[visit()], ordre="A"),
    "PERIOD_BOUNDED": dict(visits=[visit()], debut="01/01/2000", fin="31/12/2030"),
}

OTHER_DOMAIN_VALUE = "ZZ"
# Quality rules: visit changes that raise exactly this flag.
QUALITY_TRIGGERS = {
    "CP_FORMAT": dict(CP="7501"),
    "NAISSANCE_INVALID": dict(NAISSANCE="31/02/1980"),
    "AGE_RANGE": dict(NAISSANCE="31/10/1905"),
    "SORTIE_INVALID": dict(SORTIE="01/11/2026 25:00"),
    "DURATION_NEGATIVE": dict(SORTIE="01/11/2026 10:00"),
    "DURATION_TOO_LONG": dict(SORTIE="04/11/2026 10:13"),
    "PROVENANCE_INCOHERENT": dict(MODE_ENTREE="8", PROVENANCE="1"),
    "DESTINATION_INCOHERENT": dict(MODE_SORTIE="8", DESTINATION="1"),
    "ORIENT_INCOHERENT": dict(MODE_SORTIE="8", ORIENT="REA"),
    "DP_FORMAT": dict(DP="123"),
    "DA_FORMAT": dict(LISTE_DA=["I10", "10I"]),
    "ACTE_FORMAT": dict(LISTE_ACTES=["DEQP003", "DEQP03"]),
}
for _item in F.DOMAINS:
    # the mode items emptied so that no coherence rule fires with the domain rule
    QUALITY_TRIGGERS[f"{_item}_DOMAIN"] = {"MODE_ENTREE": "", "MODE_SORTIE": "", _item: OTHER_DOMAIN_VALUE}


def test_every_rule_has_a_trigger():
    levels = {rule: level for rule, (level, _) in RULES.items()}
    assert {r for r, lv in levels.items() if lv in (FILE, VISIT)} - INTAKE_RULES == set(FILE_AND_VISIT_TRIGGERS)
    assert {r for r, lv in levels.items() if lv == QUALITY} == set(QUALITY_TRIGGERS)
    assert {r for r, lv in levels.items() if lv == WARNING} == set(WARNING_TRIGGERS)


@pytest.mark.parametrize("rule", sorted(FILE_AND_VISIT_TRIGGERS))
def test_file_and_visit_rules(tmp_path, region, rule):
    make, region_kind, sender = FILE_AND_VISIT_TRIGGERS[rule]
    data = make()
    reg = None
    if region_kind == "demo":
        reg = region
    elif region_kind == "tiny":
        reg = region.adjusted(intake={"max_file_bytes": len(data) - 1})
    report, sink = check(tmp_path, data, region=reg, sender=sender)
    assert [p.rule for p in report.errors] == [rule]
    problem = report.errors[0]
    assert problem.level == RULES[rule][0]
    assert problem.message
    if RULES[rule][0] == FILE:
        assert report.accepted is False
        assert report.per_day == {} and report.as_dict()["visits_accepted"] == 0
    else:
        assert report.accepted is True
        assert report.visits == 2 and report.visits_rejected == 1
        assert problem.visit == 2 and problem.line == 6
        assert len(sink.rows) == 1 and [p for _, p in sink.rejects] == [problem]


@pytest.mark.parametrize("rule", sorted(WARNING_TRIGGERS))
def test_warning_rules(tmp_path, rule):
    kw = dict(WARNING_TRIGGERS[rule])
    report, sink = check(tmp_path, rpu_file(kw.pop("visits"), **kw))
    assert report.accepted and report.errors == []
    assert [w.rule for w in report.warnings] == [rule]
    assert len(sink.rows) == report.visits


@pytest.mark.parametrize("rule", sorted(QUALITY_TRIGGERS))
def test_quality_rules(tmp_path, rule):
    (flags,) = flags_of(tmp_path, [visit(**QUALITY_TRIGGERS[rule])])
    assert flags == [rule]


def test_quality_flags_are_counted(tmp_path):
    report, sink = check(tmp_path, rpu_file([visit(CP="7501", DP="123"), visit(), visit(DP="1")]))
    assert report.accepted and report.visits == 3 and report.visits_flagged == 2
    assert report.flags == {"CP_FORMAT": 1, "DP_FORMAT": 2}
    assert report.as_dict()["flags"] == {"CP_FORMAT": 1, "DP_FORMAT": 2}
    assert [r["flags"] for r in sink.rows] == [["CP_FORMAT", "DP_FORMAT"], [], ["DP_FORMAT"]]


def test_clean_file_triggers_nothing(tmp_path, region):
    visits = [
        visit(),
        visit(SEXE="F", MODE_ENTREE="7", PROVENANCE="1", TRANSPORT="SMUR", TRANSPORT_PEC="MED", GRAVITE="4",
              MODE_SORTIE="6", DESTINATION="1", ORIENT="REA", LISTE_DA=[], LISTE_ACTES=[]),
        visit(SEXE="I", NAISSANCE="", CP="99999", PROVENANCE="", GRAVITE="", DP="", MOTIF="", SORTIE="",
              MODE_SORTIE="", TRANSPORT="", TRANSPORT_PEC=""),
        visit(MODE_SORTIE="9", DESTINATION="", ORIENT=""),
        visit(ENTREE="26/10/2026 00:00", SORTIE="26/10/2026 00:01", NAISSANCE="26/10/2026"),
    ]
    report, sink = check(tmp_path, rpu_file(visits), region=region, sender="990000127")
    assert report.accepted
    assert report.errors == [] and report.warnings == []
    assert report.flags == {} and report.visits_flagged == 0
    assert report.visits == 5 and report.visits_rejected == 0 and report.visits_accepted == 5
    assert [r["flags"] for r in sink.rows] == [[]] * 5 and sink.rejects == []
    assert (report.finess, report.etab, report.ordre) == ("990000127", "990000127", 0)
    assert report.extract == datetime(2026, 11, 2, 3, 10)
    assert (report.period_start, report.period_end) == (date(2026, 10, 26), date(2026, 11, 1))


def test_stored_row_values(tmp_path):
    report, sink = check(tmp_path, rpu_file([visit(DP="R07.4", LISTE_DA=["I10", "E11.9"], COMMUNE="Évry")]))
    (row,) = sink.rows
    assert row["entry_date"] == date(2026, 11, 1)
    assert row["entree"] == datetime(2026, 11, 1, 10, 12) and row["sortie"] == datetime(2026, 11, 1, 13, 0)
    assert row["naissance"] == date(1980, 2, 1)
    assert row["dp"] == "R07.4" and row["da"] == ["I10", "E11.9"] and row["actes"] == ["DEQP003"]
    assert row["commune"] == "Évry" and row["cp"] == "75012" and row["sexe"] == "M"
    assert row["extra"] == {} and row["raw_invalid"] == {} and row["flags"] == []


def test_invalid_dates_kept_raw(tmp_path):
    report, sink = check(tmp_path, rpu_file([visit(NAISSANCE="00/00/0000", SORTIE="hier")]))
    (row,) = sink.rows
    assert row["naissance"] is None and row["sortie"] is None
    assert row["raw_invalid"] == {"NAISSANCE": "00/00/0000", "SORTIE": "hier"}
    assert row["flags"] == ["NAISSANCE_INVALID", "SORTIE_INVALID"]


# --- FINESS -------------------------------------------------------------------------------------------------------


def test_finess_as_ej_accepted_for_the_senders_establishment(tmp_path, region):
    for sender in ("990000101", "990000119"):
        report, _ = check(tmp_path, rpu_file([visit()], finess="990000010"), region=region, sender=sender)
        assert report.accepted and report.errors == []
        assert report.finess == "990000010" and report.etab == sender


def test_finess_et_accepted_for_its_sender(tmp_path, region):
    report, _ = check(tmp_path, rpu_file([visit()], finess="990000119"), region=region, sender="990000119")
    assert report.accepted and report.etab == "990000119"


def test_finess_of_another_establishment(tmp_path, region):
    report, sink = check(tmp_path, rpu_file([visit()], finess="990000127"), region=region, sender="990000101")
    assert not report.accepted
    (problem,) = report.errors
    assert problem.rule == "FINESS_NOT_SENDER"
    assert "990000127" in problem.message and "990000101" in problem.message
    assert "ligne 3" in str(problem)


def test_ej_of_another_establishment(tmp_path, region):
    report, _ = check(tmp_path, rpu_file([visit()], finess="990000010"), region=region, sender="990000127")
    assert [p.rule for p in report.errors] == ["FINESS_NOT_SENDER"]


def test_sender_unknown_in_region(tmp_path, region):
    report, _ = check(tmp_path, rpu_file([visit()], finess="990000127"), region=region, sender="990000226")
    assert [p.rule for p in report.errors] == ["FINESS_NOT_SENDER"]


def test_finess_unknown(tmp_path, region):
    report, _ = check(tmp_path, rpu_file([visit()], finess="990000226"), region=region, sender="990000127")
    (problem,) = report.errors
    assert problem.rule == "FINESS_UNKNOWN" and "990000226" in problem.message
    assert report.finess == "990000226" and report.etab is None


def test_without_region_only_presence_is_checked(tmp_path):
    report, _ = check(tmp_path, rpu_file([visit()], finess="123"))
    assert report.accepted and report.finess == "123" and report.etab == "123"
    report, _ = check(tmp_path, rpu_file([visit()], finess="123"), sender="990000127")
    assert report.accepted and report.etab == "990000127"
    report, _ = check(tmp_path, rpu_file([visit()], finess=""))
    assert [p.rule for p in report.errors] == ["FINESS_MISSING"]


def test_rejected_file_reports_its_visits_but_stores_none_per_day(tmp_path, region):
    report, sink = check(tmp_path, rpu_file([visit(), visit()], finess="990000226"), region=region)
    assert not report.accepted
    assert report.visits == 2 and sink.rows == []
    assert report.as_dict()["visits_accepted"] == 0 and report.as_dict()["per_day"] == {}


# --- EXTRACT, ORDRE, period -------------------------------------------------------------------------------------


def test_extract_missing_vs_unparseable(tmp_path):
    report, _ = check(tmp_path, rpu_file([visit()], extract=None))
    (missing,) = report.errors
    report, _ = check(tmp_path, rpu_file([visit()], extract="2026-11-02T03:10:00"))
    (unreadable,) = report.errors
    assert missing.rule == unreadable.rule == "EXTRACT_MISSING"
    assert "absente" in missing.message
    assert "illisible" in unreadable.message and "2026-11-02T03:10:00" in unreadable.message
    assert missing.line == unreadable.line == 3
    report, _ = check(tmp_path, rpu_file([visit()], extract=""))
    assert "absente" in report.errors[0].message


def test_extract_formats(tmp_path):
    for text, expected in (("02/11/2026 03:10:00", datetime(2026, 11, 2, 3, 10)),
                           ("02/11/2026 03:10", datetime(2026, 11, 2, 3, 10)),
                           ("02/11/2026 03:10:59", datetime(2026, 11, 2, 3, 10, 59))):
        report, _ = check(tmp_path, rpu_file([visit()], extract=text))
        assert report.accepted and report.extract == expected


def test_ordre(tmp_path):
    report, _ = check(tmp_path, rpu_file([visit()], ordre="2"))
    assert report.ordre == 2 and report.warnings == []
    report, _ = check(tmp_path, rpu_file([visit()], ordre=None))
    assert report.ordre == 0 and report.warnings == []
    report, _ = check(tmp_path, rpu_file([visit()], ordre="x"))
    assert report.ordre == 0 and [w.rule for w in report.warnings] == ["ORDRE_INVALID"]


def test_visit_rejected_alone(tmp_path):
    visits = [visit(CP="75001"), visit(CP="75002", ENTREE=""), visit(CP="75003"),
              visit(CP="75004", ENTREE="01/11/2026"),   # a date alone: midnight
              visit(CP="75005", ENTREE=None)]            # no ENTREE element at all
    data = rpu_file(visits)
    report, sink = check(tmp_path, data)
    assert report.accepted
    assert report.visits == 5 and report.visits_rejected == 2 and report.visits_accepted == 3
    assert [r["cp"] for r in sink.rows] == ["75001", "75003", "75004"]
    assert sink.rows[2]["entree"] == datetime(2026, 11, 1, 0, 0)
    assert [(raw.idx, raw.items["CP"], p.rule) for raw, p in sink.rejects] == [
        (2, "75002", "ENTREE_MISSING"), (5, "75005", "ENTREE_MISSING")]
    assert report.errors == [p for _, p in sink.rejects]
    assert report.per_day == {date(2026, 11, 1): 3}


@pytest.mark.parametrize("entree, rejected", [
    ("26/10/2026 00:00", False), ("01/11/2026 23:59", False), ("25/10/2026 23:59", True),
    ("02/11/2026 00:00", True), ("01/11/2025 10:00", True),
])
def test_entree_outside_period(tmp_path, entree, rejected):
    report, sink = check(tmp_path, rpu_file([visit(ENTREE=entree, SORTIE="")]))
    assert report.accepted
    assert report.visits_rejected == (1 if rejected else 0)
    if rejected:
        (problem,) = report.errors
        assert problem.rule == "ENTREE_OUTSIDE_PERIOD"
        assert entree[:10] in problem.message and "26/10/2026" in problem.message and "01/11/2026" in problem.message
        assert sink.rows == []
    else:
        assert len(sink.rows) == 1


def test_period_derived_from_entry_dates_when_empty(tmp_path):
    visits = [visit(ENTREE="20/10/2026 10:00", SORTIE=""), visit(ENTREE="03/11/2026 10:00", SORTIE=""),
              visit(ENTREE="28/10/2026 10:00", SORTIE="")]
    report, sink = check(tmp_path, rpu_file(visits, debut="", fin=""))
    assert report.accepted and report.errors == [] and report.warnings == []
    assert (report.period_start, report.period_end) == (date(2026, 10, 20), date(2026, 11, 3))
    assert len(sink.rows) == 3


def test_period_half_open(tmp_path):
    visits = [visit(ENTREE="25/10/2026 10:00", SORTIE=""), visit(ENTREE="05/11/2026 10:00", SORTIE="")]
    report, _ = check(tmp_path, rpu_file(visits, fin=""))
    assert [p.rule for p in report.errors] == ["ENTREE_OUTSIDE_PERIOD"] and report.errors[0].visit == 1
    assert (report.period_start, report.period_end) == (date(2026, 10, 26), date(2026, 11, 5))


@pytest.mark.parametrize("debut, fin, start, end", [
    ("26-10-2026", "01/11/2026", date(2026, 10, 20), date(2026, 11, 1)),   # the unreadable bound is derived
    ("26/10/2026", "31/11/2026", date(2026, 10, 26), date(2026, 11, 3)),
    ("01/11/2026", "26/10/2026", date(2026, 10, 20), date(2026, 11, 3)),   # reversed: both derived
])
def test_unreadable_or_reversed_period_is_derived(tmp_path, debut, fin, start, end):
    entries = {"20/10/2026 10:00", "03/11/2026 10:00", "29/10/2026 10:00"}
    inside = sorted(e for e in entries if start <= datetime.strptime(e, "%d/%m/%Y %H:%M").date() <= end)
    report, sink = check(tmp_path, rpu_file([visit(ENTREE=e, SORTIE="") for e in sorted(entries)],
                                            debut=debut, fin=fin))
    assert report.accepted and [w.rule for w in report.warnings] == ["PERIOD_INVALID"]
    assert report.visits_rejected == 3 - len(inside)
    assert all(p.rule == "ENTREE_OUTSIDE_PERIOD" for p in report.errors)
    assert (report.period_start, report.period_end) == (start, end)


def test_no_visit_keeps_declared_period(tmp_path):
    report, _ = check(tmp_path, rpu_file([]))
    assert report.accepted and report.visits == 0 and [w.rule for w in report.warnings] == ["NO_VISIT"]
    assert (report.period_start, report.period_end) == (date(2026, 10, 26), date(2026, 11, 1))


def test_per_day_counts(tmp_path):
    visits = ([visit(ENTREE="27/10/2026 08:00", SORTIE="")] +
              [visit(ENTREE="29/10/2026 23:59", SORTIE="")] * 2 +
              [visit(ENTREE="01/11/2026 00:00", SORTIE="")] * 3 +
              [visit(ENTREE="30/10/2026 12:00", SORTIE="", NAISSANCE="x")] +   # flagged, still counted
              [visit(ENTREE="31/10/2026 25:00")])                              # rejected, not counted
    report, _ = check(tmp_path, rpu_file(visits))
    assert report.per_day == {date(2026, 10, 27): 1, date(2026, 10, 29): 2, date(2026, 10, 30): 1,
                              date(2026, 11, 1): 3}
    assert report.as_dict()["per_day"] == {"2026-10-27": 1, "2026-10-29": 2, "2026-10-30": 1, "2026-11-01": 3}
    assert report.visits == 8 and report.visits_rejected == 1 and report.visits_flagged == 1


# --- coherence between blocks, both ways ---------------------------------------------------------------------


def test_provenance_coherence_table(tmp_path):
    cases = [(m, p) for m in F.PROVENANCE_BY_MODE_ENTREE for p in F.PROVENANCE]
    flags = flags_of(tmp_path, [visit(MODE_ENTREE=m, PROVENANCE=p) for m, p in cases])
    for (m, p), f in zip(cases, flags):
        expected = [] if p in F.PROVENANCE_BY_MODE_ENTREE[m] else ["PROVENANCE_INCOHERENT"]
        assert f == expected, (m, p)
    by_case = dict(zip(cases, flags))
    assert by_case[("6", "1")] == by_case[("7", "4")] == by_case[("8", "5")] == []
    assert by_case[("8", "6")] == by_case[("8", "7")] == []          # HAD, médico-social since 2013
    assert by_case[("8", "1")] == by_case[("6", "5")] == by_case[("7", "8")] == ["PROVENANCE_INCOHERENT"]


def test_destination_and_orient_coherence_tables(tmp_path):
    cases = [(m, d, "") for m in F.DESTINATION_BY_MODE_SORTIE for d in F.DESTINATION + ("",)]
    cases += [(m, "", o) for m in F.ORIENT_BY_MODE_SORTIE for o in F.ORIENT]
    flags = flags_of(tmp_path, [visit(MODE_SORTIE=m, DESTINATION=d, ORIENT=o) for m, d, o in cases])
    for (m, d, o), f in zip(cases, flags):
        expected = []
        if d and d not in F.DESTINATION_BY_MODE_SORTIE[m]:
            expected.append("DESTINATION_INCOHERENT")
        if o and o not in F.ORIENT_BY_MODE_SORTIE[m]:
            expected.append("ORIENT_INCOHERENT")
        assert f == expected, (m, d, o)
    by_case = dict(zip(cases, flags))
    assert by_case[("6", "1", "")] == by_case[("8", "6", "")] == by_case[("8", "", "")] == []
    assert by_case[("6", "", "REA")] == by_case[("8", "", "FUGUE")] == []
    assert by_case[("8", "1", "")] == by_case[("7", "6", "")] == ["DESTINATION_INCOHERENT"]
    assert by_case[("8", "", "REA")] == by_case[("6", "", "PSA")] == ["ORIENT_INCOHERENT"]


def test_coherence_not_checked_without_a_known_mode(tmp_path):
    flags = flags_of(tmp_path, [visit(MODE_ENTREE="", PROVENANCE="1"), visit(MODE_SORTIE="9", DESTINATION="1",
                                                                           ORIENT="FUGUE"),
                                visit(MODE_SORTIE="", DESTINATION="6", ORIENT="REA")])
    assert flags == [[], [], []]


# --- age and duration edges --------------------------------------------------------------------------------------


def test_age_edges(tmp_path):
    flags = flags_of(tmp_path, [
        visit(NAISSANCE="01/11/1906"),   # exactly 120 on the entry day
        visit(NAISSANCE="02/11/1906"),   # 119, one day short of 120
        visit(NAISSANCE="31/10/1905"),   # 121
        visit(NAISSANCE="01/11/2026"),   # born on the entry day: 0
        visit(NAISSANCE="02/11/2026"),   # born after the entry
        visit(NAISSANCE=""),             # unknown: no flag
    ])
    assert flags == [[], [], ["AGE_RANGE"], [], ["AGE_RANGE"], []]


def test_duration_edges(tmp_path):
    flags = flags_of(tmp_path, [
        visit(SORTIE="04/11/2026 10:12"),      # exactly 72 h
        visit(SORTIE="04/11/2026 10:13"),      # 72 h 01
        visit(SORTIE="01/11/2026 10:12"),      # SORTIE = ENTREE
        visit(SORTIE="01/11/2026 10:11"),      # before
        visit(SORTIE="01/11/2026 10:13"),      # one minute
        visit(SORTIE=""),                      # not yet out: no flag
        visit(ENTREE="01/11/2026 10:12:00", SORTIE="01/11/2026 10:12:30"),  # 30 s
    ])
    assert flags == [[], ["DURATION_TOO_LONG"], ["DURATION_NEGATIVE"], ["DURATION_NEGATIVE"], [], [], []]


# --- codes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, ok", [
    ("R074", True), ("R07.4", True), ("r07.4", True), ("R53+1", True), ("M62890", True), ("S0600", True),
    ("I10", True), ("Z04.8", True), ("123", False), ("R0", False), ("RR07", False), ("R0745678", False),
    ("CARDIO04", False),
])
def test_cim10(tmp_path, code, ok):
    dp, da = flags_of(tmp_path, [visit(DP=code), visit(LISTE_DA=["I10", code])])
    assert dp == ([] if ok else ["DP_FORMAT"])
    assert da == ([] if ok else ["DA_FORMAT"])


@pytest.mark.parametrize("code, ok", [("DEQP003", True), ("YYYY600", True), ("HBQK002-1", True), ("DEQP03", False),
                                      ("deqp003", False), ("1234567", False)])
def test_ccam(tmp_path, code, ok):
    (flags,) = flags_of(tmp_path, [visit(LISTE_ACTES=[code])])
    assert flags == ([] if ok else ["ACTE_FORMAT"])


@pytest.mark.parametrize("cp, ok", [
    ("75012", True), ("2A004", True), ("2B033", True), ("75999", True), ("99134", True), ("99999", True),
    ("97300", True), ("", True), ("7501", False), ("750012", False), ("2C004", False), ("75 01", False),
])
def test_postal_code(tmp_path, cp, ok):
    (flags,) = flags_of(tmp_path, [visit(CP=cp)])
    assert flags == ([] if ok else ["CP_FORMAT"])


@pytest.mark.parametrize("item", sorted(F.DOMAINS))
def test_every_domain_value_accepted(tmp_path, item):
    no_mode = {"MODE_ENTREE": "", "PROVENANCE": "", "MODE_SORTIE": ""}   # no coherence rule
    visits = [visit(**{**no_mode, item: v}) for v in F.DOMAINS[item]]
    assert flags_of(tmp_path, visits) == [[]] * len(visits)
    (lower,) = flags_of(tmp_path, [visit(**{**no_mode, item: F.DOMAINS[item][0].lower() + "x"})])
    assert lower == [f"{item}_DOMAIN"]


# --- messages: line and visit -------------------------------------------------------------------------------------


def test_problem_messages_name_line_and_visit(tmp_path):
    visits = [visit(), visit(ENTREE=""), visit(ENTREE="xx/11/2026 10:00"), visit(ENTREE="01/01/2026 10:00")]
    data = rpu_file(visits)
    report, _ = check(tmp_path, data)
    assert [p.rule for p in report.errors] == ["ENTREE_MISSING", "ENTREE_INVALID", "ENTREE_OUTSIDE_PERIOD"]
    lines = data.decode().split("\n")
    for problem, idx in zip(report.errors, (2, 3, 4)):
        assert problem.visit == idx
        assert lines[problem.line - 1].startswith("<PATIENT>")
        s = str(problem)
        assert f"ligne {problem.line}" in s and f"passage n°{idx}" in s and problem.message in s
        assert problem.as_dict() == {"rule": problem.rule, "message": problem.message, "line": problem.line,
                                     "visit": idx}


@pytest.mark.parametrize("rule", ["FINESS_MISSING", "FINESS_UNKNOWN", "FINESS_NOT_SENDER", "EXTRACT_MISSING",
                                  "SCHEMA", "NOT_WELL_FORMED"])
def test_file_problem_messages_name_the_line(tmp_path, region, rule):
    make, region_kind, sender = FILE_AND_VISIT_TRIGGERS[rule]
    report, _ = check(tmp_path, make(), region=region if region_kind else None, sender=sender)
    (problem,) = report.errors
    assert problem.line is not None and f"ligne {problem.line}" in str(problem)


def test_schema_problem_names_the_visit(tmp_path):
    report, _ = check(tmp_path, _schema())
    (problem,) = report.errors
    assert problem.visit == 1 and "passage n°1" in str(problem) and "ligne 5" in str(problem)


def test_problem_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule NO_SUCH_RULE"):
        Problem("NO_SUCH_RULE", "x")
    assert str(Problem("NO_VISIT", "vide")) == "[NO_VISIT] vide"


def test_many_rejected_visits_all_counted(tmp_path):
    from rpu.checks import MAX_REPORTED_VISIT_ERRORS

    n = MAX_REPORTED_VISIT_ERRORS + 5
    report, sink = check(tmp_path, rpu_file([visit(ENTREE="")] * n + [visit()]))
    assert report.accepted and report.visits_rejected == n and len(sink.rejects) == n
    assert len(report.errors) == MAX_REPORTED_VISIT_ERRORS
    assert len(sink.rows) == 1


def test_shared_ej_without_a_sender_is_refused_rather_than_guessed(tmp_path, region):
    report, _ = check(tmp_path, rpu_file([visit()], finess="990000010"), region=region)
    assert not report.accepted
    (problem,) = report.errors
    assert problem.rule == "FINESS_NOT_SENDER" and "990000101" in problem.message and "990000119" in problem.message


def test_parallel_reader_gives_the_same_reports_as_the_serial_one(tmp_path, monkeypatch):
    """Big files are parsed in a forked child: same visits, same problems, same rejections."""
    from rpu import parse, synth

    region = get_region("demo")
    files = synth.generate(region, tmp_path, start=date(2026, 11, 1), days=1, seed=5, errors=synth.ERRORS)
    assert len(files) > 12
    rows = {}
    for threshold in (1 << 40, 0):
        monkeypatch.setattr(parse, "PARALLEL_MIN_BYTES", threshold)
        assert isinstance(parse.reader_for(files[0]), parse.ParallelReader) == (threshold == 0)
        reports = []
        for f in files:
            sink = Sink()
            reports.append(check_file(f, region, f.parent.name, sink).as_dict())
            reports.append([(r["idx"], r["entree"], r["flags"]) for r in sink.rows])
        rows[threshold] = reports
    assert rows[0] == rows[1 << 40]
    assert any(not r["accepted"] for r in rows[0] if isinstance(r, dict))


def test_a_parser_child_killed_mid_file_is_our_fault_not_the_files(tmp_path, monkeypatch):
    """The forked parser dies (killed, out of memory) after a first batch: ParserStopped (retried by the task),
    never a rejection of the file; the visits before it came through whole."""
    import os
    import signal

    from rpu import parse

    path = tmp_path / "f.xml"
    path.write_bytes(rpu_file([visit()] * (parse._BATCH + 10)))
    real = parse._parse_into

    def dies_after_a_batch(reader, out):
        class Dying:
            sent = 0

            def send_bytes(self, data):
                out.send_bytes(data)
                self.sent += data[:1] == b"v"
                if self.sent:
                    os.kill(os.getpid(), signal.SIGKILL)

        real(reader, Dying())

    monkeypatch.setattr(parse, "_parse_into", dies_after_a_batch)
    reader = parse.ParallelReader(path)
    got = []
    with pytest.raises(parse.ParserStopped, match="stopped unexpectedly"):
        for v in reader.visits():
            got.append(v.idx)
    assert got == list(range(1, parse._BATCH + 1)) and reader.header is not None


def test_a_half_declared_period_without_accepted_visit_replaces_nothing(tmp_path):
    """DATEFIN empty and no usable ENTREE (found by tests/test_fuzz.py): no period to derive, none is invented."""
    report, sink = check(tmp_path, rpu_file([visit(ENTREE="")], fin=""))
    assert report.accepted and report.visits_rejected == 1
    assert (report.period_start, report.period_end) == (None, None)
