"""rpu.xsd: what the compiled schema accepts and refuses (the structure only; domains are quality flags)."""
from __future__ import annotations

import pytest
from lxml import etree

from rpu import rpu_format as F
from rpu import xsd
from support.rpu_xml import rpu_file, visit


def _valid(data: bytes) -> bool:
    return xsd.schema().validate(etree.fromstring(data))


def test_a_good_file_and_an_empty_one_are_valid():
    assert _valid(rpu_file([visit(), visit(DP="I10")]))
    assert _valid(rpu_file([]))
    assert _valid(rpu_file([visit()], one_passages_per_patient=True))   # several PASSAGES blocks


def test_item_order_and_regional_elements_are_accepted():
    v = dict(reversed(list(visit().items())))
    assert _valid(rpu_file([v]))
    assert _valid(rpu_file([visit(EXTRA_REGIONAL="libre")], header_extra="<LOGICIEL>X</LOGICIEL>"))


def test_an_out_of_domain_value_is_not_a_schema_error():
    """FEDORU: a value outside its domain is a quality flag, not a rejection."""
    assert _valid(rpu_file([visit(SEXE="Z", GRAVITE="9", DP="not-a-code")]))


@pytest.mark.parametrize("chars,ok", [(F.MAX_ITEM_CHARS, True), (F.MAX_ITEM_CHARS + 1, False)])
def test_a_known_item_is_at_most_max_item_chars(chars, ok):
    assert _valid(rpu_file([visit(COMMUNE="A" * chars)])) is ok


def test_structure_errors_are_refused():
    good = rpu_file([visit()])
    assert not _valid(good.replace(b"<OSCOUR>", b"<RPU>").replace(b"</OSCOUR>", b"</RPU>"))        # root
    assert not _valid(good.replace(b"<PASSAGES>", b"<VISITES>").replace(b"</PASSAGES>", b"</VISITES>"))
    assert not _valid(good.replace(b"<DA>I10</DA>", b"<DIAG>I10</DIAG>"))          # LISTE_DA holds DA only
    assert not _valid(good.replace(b"<CP>75012</CP>", b"<CP><X>75012</X></CP>"))  # an item is simple text
    no_header = b"\n".join(line for line in good.split(b"\n") if b"ETABLISSEMENT" not in line)
    assert not _valid(no_header)


def test_the_schema_is_compiled_once():
    assert xsd.schema() is xsd.schema()


def test_render_declares_every_item_and_domain_once():
    text = xsd.render()
    for item in F.HEADER_ITEMS + F.ITEMS:
        assert text.count(f'<xs:element name="{item}"') == 1, item
    for item in F.DOMAINS:
        assert text.count(f'name="domain_{item}"') == 1, item
    etree.fromstring(text.encode())   # well-formed
