"""The synthetic RPU generator: determinism, sliding window, variants, errors, distributions, memory, CLI."""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from lxml import etree

from rpu import rpu_format as F
from rpu import synth
from rpu.cli.synth import add_synth
from rpu.config import PROJECT_DIR, load_region

DEMO = PROJECT_DIR / "config" / "regions" / "demo.yaml"
FINESS = "990000127"
SEND_DAY = date(2025, 3, 10)          # a Monday
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
NAME_RE = re.compile(r"RPU_(?P<finess>[0-9][0-9AB][0-9]{7})_(?P<ts>\d{14})\.xml")


def parse(data: bytes) -> etree._Element:
    """Parse like the concentrator: bytes as declared / UTF-8, else the Windows-1252 fallback."""
    try:
        return etree.fromstring(data, PARSER)
    except etree.XMLSyntaxError:
        if data.lstrip().startswith(b"<?xml"):
            raise
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return etree.fromstring(data.decode("cp1252"), PARSER)
        raise


def patients(root) -> list[etree._Element]:
    return root.findall(f"{F.PASSAGES}/{F.PATIENT}")


def as_dict(p) -> dict[str, object]:
    out: dict[str, object] = {}
    for child in p:
        if child.tag in F.LIST_ITEMS:
            out[child.tag] = [c.text or "" for c in child]
        else:
            out[child.tag] = child.text or ""
    return out


@pytest.fixture(scope="module")
def region():
    return load_region(DEMO)


@pytest.fixture(scope="module")
def generated(region, tmp_path_factory):
    """The demo region, 3 send days, every error injected."""
    out = tmp_path_factory.mktemp("gen")
    kw = dict(start=SEND_DAY, days=3, seed=5, scale=0.5, errors=synth.ERRORS)
    planned = synth.plan(region, **kw)
    paths = synth.generate(region, out, **kw)
    return out, planned, paths


# ---------------------------------------------------------------------------------------------- basics

def test_item_order_follows_rpu_format(tmp_path):
    path = synth.daily_file(tmp_path, FINESS, SEND_DAY, seed=1, mean_per_day=30)
    root = parse(path.read_bytes())
    assert [c.tag for c in root.find(F.HEADER)] == list(F.HEADER_ITEMS)
    ps = patients(root)
    assert ps
    for p in ps:
        assert [c.tag for c in p] == list(F.ITEMS)
        assert all(c.tag == F.LIST_ITEMS["LISTE_DA"] for c in p.find("LISTE_DA"))
        assert all(c.tag == F.LIST_ITEMS["LISTE_ACTES"] for c in p.find("LISTE_ACTES"))


def test_daily_file_header_and_window(tmp_path):
    path = synth.daily_file(tmp_path, FINESS, SEND_DAY, seed=1, mean_per_day=30, window_days=7)
    m = NAME_RE.fullmatch(path.name)
    assert m and m["finess"] == FINESS
    root = parse(path.read_bytes())
    h = {c.tag: c.text or "" for c in root.find(F.HEADER)}
    assert h["FINESS"] == FINESS and h["ORDRE"] == "0"
    extract = datetime.strptime(h["EXTRACT"], F.DATETIME_S_FMT)
    assert extract.date() == SEND_DAY and extract.hour == 2
    assert m["ts"] == extract.strftime("%Y%m%d%H%M%S")
    assert F.parse_date(h["DATEDEBUT"]) == SEND_DAY - timedelta(days=7)
    assert F.parse_date(h["DATEFIN"]) == SEND_DAY - timedelta(days=1)
    days = [F.parse_datetime(p.findtext("ENTREE")).date() for p in patients(root)]
    assert min(days) >= SEND_DAY - timedelta(days=7) and max(days) == SEND_DAY - timedelta(days=1)
    assert days == sorted(days)
    # the XSD of the project accepts it
    schema = etree.XMLSchema(etree.parse(str(PROJECT_DIR / "include" / "xsd" / "rpu2006.xsd")))
    assert schema.validate(root), schema.error_log
    assert not list(tmp_path.glob("*.part"))


def test_escaping_and_encodings(tmp_path):
    v = synth.visits_for_day(FINESS, SEND_DAY, 1, 5)[0]
    v.COMMUNE = "Saint-Jean & <Œuvre> d'Aurèle"
    v.DA = ["I10", "a&b"]
    v.extra = {"CIRCONSTANCE": "x < y & z"}
    for enc, decl in (("utf-8", True), ("iso-8859-1", True), ("cp1252", False), ("utf-8", False)):
        path = tmp_path / f"f-{enc}-{decl}.xml"
        n = synth.write_file(path, FINESS, [v], extract=datetime(2025, 3, 10, 2, 0, 0),
                             period=(SEND_DAY, SEND_DAY), encoding=enc, declaration=decl)
        assert n == 1
        p = patients(parse(path.read_bytes()))[0]
        # Œ is a byte in cp1252, a character reference in Latin-1
        assert p.findtext("COMMUNE") == "Saint-Jean & <Œuvre> d'Aurèle"
        assert [d.text for d in p.find("LISTE_DA")] == ["I10", "a&b"]
        assert p.findtext("CIRCONSTANCE") == "x < y & z"


# ---------------------------------------------------------------------------------------------- determinism

def test_determinism(tmp_path):
    a = synth.daily_file(tmp_path / "a", FINESS, SEND_DAY, seed=3, mean_per_day=60)
    b = synth.daily_file(tmp_path / "b", FINESS, SEND_DAY, seed=3, mean_per_day=60)
    c = synth.daily_file(tmp_path / "c", FINESS, SEND_DAY, seed=4, mean_per_day=60)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert synth.visits_for_day(FINESS, SEND_DAY, 3, 60) == synth.visits_for_day(FINESS, SEND_DAY, 3, 60)


def test_generate_is_deterministic(region, tmp_path):
    kw = dict(start=SEND_DAY, days=2, seed=9, scale=0.2, errors=("all",))
    p1 = synth.generate(region, tmp_path / "x", **kw)
    p2 = synth.generate(region, tmp_path / "y", **kw)
    assert [p.relative_to(tmp_path / "x") for p in p1] == [p.relative_to(tmp_path / "y") for p in p2]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(p1, p2))
    p3 = synth.generate(region, tmp_path / "z", **{**kw, "seed": 10})
    assert [p.read_bytes() for p in p1] != [p.read_bytes() for p in p3]


@pytest.mark.parametrize("variant", [None, "regional_extras", "seconds", "cp1252_undeclared"])
def test_sliding_window_resends_identical_visits(tmp_path, variant):
    kw = dict(seed=2, mean_per_day=120, variant=variant)
    f1 = synth.daily_file(tmp_path, FINESS, SEND_DAY, **kw)
    f2 = synth.daily_file(tmp_path, FINESS, SEND_DAY + timedelta(days=1), **kw)

    def by_day(path):
        out: dict[date, list[dict]] = {}
        for p in patients(parse(path.read_bytes())):
            out.setdefault(F.parse_datetime(p.findtext("ENTREE")).date(), []).append(as_dict(p))
        return out

    d1, d2 = by_day(f1), by_day(f2)
    common = sorted(set(d1) & set(d2))
    assert len(common) == 6
    first_send = SEND_DAY - timedelta(days=1)       # first sent by f1, re-sent by f2
    late = 0
    for day in common:
        assert len(d1[day]) == len(d2[day]) > 0
        if day != first_send:
            assert d1[day] == d2[day]
            continue
        for a, b in zip(d1[day], d2[day]):
            if a != b:          # only the coding may arrive later
                assert a["DP"] == "" and a["LISTE_DA"] == [] and b["DP"] != ""
                assert {k: v for k, v in a.items() if k not in ("DP", "LISTE_DA")} == \
                       {k: v for k, v in b.items() if k not in ("DP", "LISTE_DA")}
                late += 1
    assert 1 <= late <= 0.3 * len(d1[first_send])


# ---------------------------------------------------------------------------------------------- distributions

@pytest.fixture(scope="module")
def sample():
    visits = []
    for i in range(28):
        visits += synth.visits_for_day(FINESS, date(2025, 1, 6) + timedelta(days=i), 1, 150)
    return visits


def test_values_within_domains_and_coherent(sample):
    assert len(sample) > 3000
    for v in sample:
        for item, domain in F.DOMAINS.items():
            value = getattr(v, item)
            assert value == "" or value in domain, (item, value)
        assert v.MODE_ENTREE and v.MODE_SORTIE
        assert v.PROVENANCE == "" or v.PROVENANCE in F.PROVENANCE_BY_MODE_ENTREE[v.MODE_ENTREE]
        if v.MODE_SORTIE == "9":
            assert v.DESTINATION == "" and v.ORIENT == ""
        else:
            assert v.DESTINATION in F.DESTINATION_BY_MODE_SORTIE[v.MODE_SORTIE]
            assert v.ORIENT in F.ORIENT_BY_MODE_SORTIE[v.MODE_SORTIE]
        assert F.postal_code(v.CP)
        assert v.DP == "" or F.cim10(v.DP)
        assert all(F.cim10(x) for x in v.DA) and (v.DP or not v.DA)
        assert all(F.ccam(x) for x in v.ACTES)
        entree, sortie = F.parse_datetime(v.ENTREE), F.parse_datetime(v.SORTIE)
        assert entree and sortie and timedelta(0) < sortie - entree <= timedelta(hours=F.MAX_DURATION_HOURS)
        if v.NAISSANCE:
            age = F.age_years(F.parse_date(v.NAISSANCE), entree.date())
            assert 0 <= age <= 101


def test_distributions_are_plausible(sample):
    n = len(sample)

    def share(pred):
        return sum(1 for v in sample if pred(v)) / n

    assert 0.7 <= share(lambda v: v.MODE_ENTREE == "8") <= 0.95
    assert 0.1 <= share(lambda v: v.MODE_SORTIE in ("6", "7")) <= 0.35
    assert 0.15 <= share(lambda v: v.MODE_SORTIE == "6" and v.DESTINATION == "1") <= 0.3
    assert share(lambda v: v.MODE_SORTIE == "9") < 0.01
    assert 0.78 <= share(lambda v: v.DP != "") <= 0.92
    assert 0.6 <= share(lambda v: v.TRANSPORT == "PERSO") <= 0.85
    assert share(lambda v: v.TRANSPORT_PEC == "AUCUN") > 0.7
    assert share(lambda v: not v.ACTES) > 0.5
    assert 0.45 <= share(lambda v: v.GRAVITE == "2") <= 0.7
    assert share(lambda v: v.SEXE == "I") < 0.01
    assert 0.5 <= share(lambda v: v.ORIENT == "") <= 0.9
    assert share(lambda v: v.CP == "99999") > 0.003
    assert share(lambda v: v.CP.startswith("99") and v.CP != "99999") > 0.003
    assert share(lambda v: v.CP.endswith("999") and not v.CP.startswith("99")) > 0.01
    assert max(Counter(v.CP for v in sample).values()) / n < 0.5
    assert all(re.fullmatch(r"[A-Z]+[0-9]{2}", v.MOTIF) for v in sample if v.MOTIF)
    hours = [F.parse_datetime(v.ENTREE) - F.parse_datetime(v.SORTIE) for v in sample]
    durations = sorted(-h.total_seconds() / 3600 for h in hours)
    assert 2 <= statistics.median(durations) <= 4.5
    assert sum(d > 24 for d in durations) / n < 0.03
    by_hour = Counter(F.parse_datetime(v.ENTREE).hour for v in sample)
    assert by_hour[11] > 2.5 * by_hour[4] and by_hour[19] > 2.5 * by_hour[4]
    ages = [F.age_years(F.parse_date(v.NAISSANCE), F.parse_datetime(v.ENTREE).date())
            for v in sample if v.NAISSANCE]
    assert min(ages) == 0 and max(ages) >= 95
    assert 0.1 <= sum(a < 15 for a in ages) / len(ages) <= 0.35
    assert 0.08 <= sum(a >= 75 for a in ages) / len(ages) <= 0.3


def test_weekly_seasonality_and_population():
    counts = Counter()
    for i in range(7 * 30):
        day = date(2024, 1, 1) + timedelta(days=i)
        counts[day.weekday()] += synth.day_count(FINESS, day, 1, 200)
    assert counts[0] > max(counts[k] for k in range(1, 7))        # Monday highest
    kids = synth.visits_for_day(FINESS, SEND_DAY, 1, 200, population="child")
    assert kids and all(F.age_years(F.parse_date(v.NAISSANCE), SEND_DAY) <= 17 for v in kids if v.NAISSANCE)


# ---------------------------------------------------------------------------------------------- region files

def test_generate_layout_and_parsing(generated, region):
    out, planned, paths = generated
    assert len(paths) == len(planned) == len(region.establishments) * 3 + 5   # + 5 rejected-type files
    assert {pf.error for pf in planned} == set(synth.ERRORS) | {None}
    assert {pf.variant for pf in planned} == set(synth.VARIANTS) | {None}
    means = {pf.finess: pf.mean_per_day for pf in planned}
    assert max(means.values()) > 3 * min(means.values())
    for path, pf in zip(paths, planned):
        assert path == out / pf.relpath and path.parent.name == pf.finess
        m = NAME_RE.fullmatch(path.name)
        assert m and m["finess"] == pf.finess and m["ts"] == pf.extract.strftime("%Y%m%d%H%M%S")
        data = path.read_bytes()
        if pf.error == "malformed":
            with pytest.raises(etree.XMLSyntaxError):
                etree.fromstring(data, PARSER)
            continue
        root = parse(data)
        assert root.tag == F.ROOT and len(patients(root)) > 0


def test_variants_have_their_property(generated):
    out, planned, paths = generated
    seen = set()
    for path, pf in zip(paths, planned):
        if pf.error or not pf.variant:
            continue
        seen.add(pf.variant)
        data = path.read_bytes()
        root = parse(data)
        ps = patients(root)
        if pf.variant == "no_declaration":
            assert not data.startswith(b"<?xml") and data.startswith(b"<OSCOUR>")
            data.decode("utf-8")
        elif pf.variant == "latin1":
            assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
            assert re.search(rb"[\xc0-\xff]", data)
            assert any(re.search("[éèêâôç]", p.findtext("COMMUNE")) for p in ps)
            assert b"<DP/>" in data or b"<LISTE_ACTES/>" in data
        elif pf.variant == "cp1252_undeclared":
            assert not data.startswith(b"<?xml")
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
            assert any(re.search("[éèêâôçœ’]", p.findtext("COMMUNE")) for p in ps)
        elif pf.variant == "one_passages_per_patient":
            assert len(root.findall(F.PASSAGES)) == len(ps) > 1
        elif pf.variant == "seconds":
            assert all(re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", p.findtext("ENTREE")) for p in ps)
            assert all(re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", p.findtext("SORTIE")) for p in ps)
        elif pf.variant == "empty_datefin":
            assert root.find(f"{F.HEADER}/DATEFIN") is not None
            assert not root.findtext(f"{F.HEADER}/DATEFIN")
        elif pf.variant == "regional_extras":
            extras = ("HMED", "CIRCONSTANCE", "ENTREE_UHCD", "MODE_SORTIE_UHCD", "DESTINATION_UHCD", "ORIENT_UHCD")
            for p in ps:
                assert [c.tag for c in p][: len(F.ITEMS)] == list(F.ITEMS)
                assert [c.tag for c in p][len(F.ITEMS):] == list(extras)
    assert seen == set(synth.VARIANTS)


def test_variant_via_daily_file(tmp_path):
    for variant in synth.VARIANTS:
        path = synth.daily_file(tmp_path / variant, FINESS, SEND_DAY, seed=1, mean_per_day=40, variant=variant)
        assert len(patients(parse(path.read_bytes()))) > 50
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        synth.daily_file(tmp_path, FINESS, SEND_DAY, seed=1, mean_per_day=40, variant="nope")


def test_injected_errors(generated, region):
    out, planned, paths = generated
    known = {f for e in region.establishments for f in e.identifiers}
    found = Counter()
    for path, pf in zip(paths, planned):
        if not pf.error:
            continue
        found[pf.error] += 1
        data = path.read_bytes()
        if pf.error == "malformed":
            assert not data.rstrip().endswith(b"</OSCOUR>")
            continue
        root = parse(data)
        header = root.find(F.HEADER)
        finess = header.findtext("FINESS")
        if pf.error == "unknown_finess":
            assert finess not in known and re.fullmatch(F.FINESS_RE, finess)
        elif pf.error == "other_finess":
            other = region.establishment(finess)
            assert other is not None and other.finess != pf.finess and path.parent.name == pf.finess
        elif pf.error == "missing_finess":
            assert header.find("FINESS") is None
        elif pf.error == "missing_extract":
            assert header.find("EXTRACT") is None and finess == pf.finess
        else:
            assert finess == pf.finess and header.findtext("EXTRACT")
        ps = patients(root)
        bad = [p for p in ps if F.parse_datetime(p.findtext("ENTREE")) is None]
        if pf.error == "bad_entree":
            assert len(bad) == 3 and len(ps) > 3
            assert "" in [p.findtext("ENTREE") or "" for p in bad]
        else:
            assert not bad
        if pf.error == "quality":
            vals = [as_dict(p) for p in ps]
            assert any(v["SEXE"] not in F.SEXE for v in vals)
            assert any(v["GRAVITE"] not in F.GRAVITE + ("",) for v in vals)
            assert any(v["MODE_ENTREE"] == "8" and v["PROVENANCE"] not in F.PROVENANCE_BY_MODE_ENTREE["8"] + ("",)
                       for v in vals)
            assert any(v["MODE_SORTIE"] == "8" and v["ORIENT"] in F.ORIENT_HOSPITAL for v in vals)
            assert any(v["DP"] and not F.cim10(v["DP"]) for v in vals)
            births = [F.parse_date(v["NAISSANCE"]) for v in vals]
            entries = [F.parse_datetime(v["ENTREE"]) for v in vals]
            assert any(b and F.age_years(b, e.date()) > F.MAX_AGE_YEARS for b, e in zip(births, entries))
            exits = [F.parse_datetime(v["SORTIE"]) for v in vals]
            assert any(s and s < e for s, e in zip(exits, entries))
    assert set(found) == set(synth.ERRORS)
    # rejected-type errors come in addition to the regular daily file of that day
    regular = {(pf.finess, pf.send_day) for pf in planned if pf.error in (None, "bad_entree", "quality")}
    assert len(regular) == len(region.establishments) * 3


def test_unknown_error_name(region, tmp_path):
    with pytest.raises(ValueError, match="unknown error"):
        synth.generate(region, tmp_path, start=SEND_DAY, days=1, errors=("typo",))


# ---------------------------------------------------------------------------------------------- big files

def test_big_file_exact_count(tmp_path):
    path = synth.big_file(tmp_path / "big.xml", FINESS, 1234, seed=3, start=date(2025, 1, 1))
    root = parse(path.read_bytes())
    ps = patients(root)
    assert len(ps) == 1234
    days = {F.parse_datetime(p.findtext("ENTREE")).date() for p in ps}
    assert len(days) >= 5
    assert F.parse_date(root.findtext(f"{F.HEADER}/DATEDEBUT")) == date(2025, 1, 1)
    assert F.parse_date(root.findtext(f"{F.HEADER}/DATEFIN")) == max(days)
    assert synth.big_file_name(FINESS, 1234, seed=3, start=date(2025, 1, 1)).startswith(f"RPU_{FINESS}_")


def test_big_file_memory_is_flat(tmp_path):
    """Peak RSS of a fresh process writing 50k then 200k visits: flat (a tree or a list would grow ~4×)."""
    code = ("import resource, sys; from pathlib import Path; from rpu import synth; "
            "synth.big_file(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")

    def peak_kb(n: int) -> int:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"b{n}.xml"), FINESS, str(n)],
                             check=True, capture_output=True, text=True).stdout
        return int(out.split()[-1])

    small, large = peak_kb(50_000), peak_kb(200_000)
    assert large < small * 1.3 + 10_000, (small, large)          # kB
    assert (tmp_path / "b200000.xml").read_bytes().count(b"<PATIENT>") == 200_000


# ---------------------------------------------------------------------------------------------- CLI

def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpu")
    add_synth(parser.add_subparsers(dest="command"))
    return parser


def test_cli_region(tmp_path, capsys):
    args = make_parser().parse_args(["synth", "--out", str(tmp_path), "--region", "demo", "--start", "2025-03-03",
                                     "--days", "2", "--scale", "0.1", "--errors", "malformed,quality"])
    assert args.func(args) == 0
    files = sorted(tmp_path.rglob("*.xml"))
    assert len(files) == 12 * 2 + 1
    assert {f.parent.name for f in files} == {e.finess for e in load_region(DEMO).establishments}
    line = capsys.readouterr().out.strip()
    assert re.search(r"25 files, [\d,]+ visits", line), line


def test_cli_region_file_and_big(tmp_path, capsys):
    args = make_parser().parse_args(["synth", "--out", str(tmp_path / "r"), "--region-file", str(DEMO),
                                     "--start", "2025-03-03", "--days", "1", "--scale", "0.05", "--window", "3"])
    assert args.func(args) == 0
    assert len(list((tmp_path / "r").rglob("*.xml"))) == 12
    args = make_parser().parse_args(["synth", "--out", str(tmp_path / "b"), "--visits", "700", "--finess", FINESS])
    assert args.func(args) == 0
    (big,) = (tmp_path / "b").glob("*.xml")
    assert NAME_RE.fullmatch(big.name) and len(patients(parse(big.read_bytes()))) == 700
    assert "1 file, 700 visits" in capsys.readouterr().out
    args = make_parser().parse_args(["synth", "--out", str(tmp_path), "--errors", "oops"])
    assert args.func(args) == 2
    args = make_parser().parse_args(["synth", "--out", str(tmp_path), "--region", "no_such_region"])
    assert args.func(args) == 2
    assert "unknown region" in capsys.readouterr().err
