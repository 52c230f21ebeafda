"""The XSD, the quality rules and the format module must agree (rpu_format is the one source of truth)."""
from __future__ import annotations

import pytest
from lxml import etree

from rpu import rpu_format as F
from rpu import xsd
from rpu.problems import QUALITY, RULES
from support.rpu_xml import GOOD_VISIT

XS = "{http://www.w3.org/2001/XMLSchema}"
DOMAIN_SUFFIX = "_DOMAIN"


@pytest.fixture(scope="module")
def tree():
    return etree.parse(str(xsd.XSD_PATH), etree.XMLParser(resolve_entities=False, no_network=True))


def test_committed_xsd_is_the_rendered_one():
    committed = xsd.XSD_PATH.read_text(encoding="utf-8")
    assert committed == xsd.render(), "run `python -m rpu.xsd` and commit include/xsd/rpu2006.xsd"


def test_committed_xsd_compiles():
    assert isinstance(xsd.schema(), etree.XMLSchema)


def xsd_domains(tree) -> dict[str, list[str]]:
    out = {}
    for st in tree.getroot().iterfind(f"{XS}simpleType"):
        name = st.get("name")
        if name.startswith("domain_"):
            out[name[len("domain_"):]] = [e.get("value") for e in st.iterfind(f"{XS}restriction/{XS}enumeration")]
    return out


def test_every_domain_is_an_xsd_enumeration(tree):
    domains = xsd_domains(tree)
    assert set(domains) == set(F.DOMAINS)
    for item, values in F.DOMAINS.items():
        assert domains[item] == list(values), item
        assert len(set(values)) == len(values), f"duplicate value in domain {item}"


def test_every_item_is_declared(tree):
    root = tree.getroot()
    declared = {e.get("name") for e in root.iterfind(f"{XS}element")}
    for item in F.ITEMS + F.HEADER_ITEMS + (F.ROOT, F.HEADER, F.PASSAGES, F.PATIENT):
        assert item in declared, item
    for liste, child in F.LIST_ITEMS.items():
        (el,) = [e for e in root.iterfind(f"{XS}element") if e.get("name") == liste]
        assert [c.get("name") for c in el.iter(f"{XS}element") if c is not el] == [child]
    simple = {e.get("name") for e in root.iterfind(f"{XS}element") if e.get("type") == "text"}
    assert simple == set(F.SIMPLE_ITEMS + F.HEADER_ITEMS)


def test_xsd_formats_are_the_module_regexes(tree):
    patterns = {st.get("name")[len("format_"):]: st.find(f"{XS}restriction/{XS}pattern").get("value")
                for st in tree.getroot().iterfind(f"{XS}simpleType") if st.get("name").startswith("format_")}
    assert patterns == {"CIM10": F.CIM10_RE, "CCAM": F.CCAM_RE, "CP": F.CP_RE, "FINESS": F.FINESS_RE,
                        "date": F.DATE_RE, "datetime": F.DATETIME_RE}


def test_domain_rules_match_domains():
    domain_rules = {r[: -len(DOMAIN_SUFFIX)] for r in RULES if r.endswith(DOMAIN_SUFFIX)}
    assert domain_rules == set(F.DOMAINS)
    for item in F.DOMAINS:
        level, words = RULES[f"{item}{DOMAIN_SUFFIX}"]
        assert level == QUALITY and item in words


def test_item_lists_are_consistent():
    assert set(F.SIMPLE_ITEMS) | set(F.LIST_ITEMS) == set(F.ITEMS)
    assert len(F.ITEMS) == 18 and len(set(F.ITEMS)) == 18
    assert set(F.DOMAINS) <= set(F.SIMPLE_ITEMS)
    assert list(GOOD_VISIT) == list(F.ITEMS)   # the test builder writes every item, in the usual order


def test_coherence_tables_stay_within_domains():
    assert set(F.PROVENANCE_BY_MODE_ENTREE) <= set(F.MODE_ENTREE)
    for values in F.PROVENANCE_BY_MODE_ENTREE.values():
        assert set(values) <= set(F.PROVENANCE)
    for table, domain in ((F.DESTINATION_BY_MODE_SORTIE, F.DESTINATION), (F.ORIENT_BY_MODE_SORTIE, F.ORIENT)):
        assert set(table) <= set(F.MODE_SORTIE)
        for values in table.values():
            assert set(values) <= set(domain) | {""}
    assert set(F.ORIENT) == set(F.ORIENT_HOSPITAL) | set(F.ORIENT_HOME)


def test_committed_stage_queries_are_the_generated_ones():
    """The stage table and the inserts from it follow the items of rpu_format (rpu.visit_table)."""
    from rpu import visit_table

    for name, render in visit_table.RENDERERS.items():
        assert visit_table.path(name).read_text(encoding="utf-8") == render(), \
            f"run `python -m rpu.visit_table --write` and commit include/sql/queries/{name}.sql"


def test_the_stored_visit_has_a_column_per_item():
    from rpu import visit_table

    items = visit_table.VISIT_COLUMNS[3:3 + len(F.ITEMS)]
    assert items == tuple(visit_table.column(i) for i in F.ITEMS)
    assert visit_table.STAGE_COLUMNS[:len(visit_table.VISIT_COLUMNS)] == visit_table.VISIT_COLUMNS
    assert visit_table.EMPTY_IN_REJECTED == 1 + len(F.ITEMS) + 3   # entry_date, the items, extra, raw_invalid, flags


def test_committed_quality_report_query_is_the_generated_one():
    """`rpu report quality` measures every item with the domains and formats of rpu_format (rpu.report_sql)."""
    from rpu import report_sql

    assert report_sql.PATH.read_text(encoding="utf-8") == report_sql.render(), \
        "run `python -m rpu.report_sql --write` and commit include/sql/queries/report_quality.sql"
