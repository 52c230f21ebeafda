"""Reading RPU files: every real-world variant, safety, XML and schema errors located, streaming."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

import rpu.parse as parse_module
from rpu.checks import VISIT_COLUMNS, check_file
from rpu.parse import FileRejected, RpuReader
from support.rpu_xml import rpu_file, visit


def write(tmp_path: Path, data: bytes, name: str = "rpu.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, **kw) -> tuple[RpuReader, list]:
    reader = RpuReader(path, **kw)
    return reader, list(reader.visits())


def rejected(path: Path, **kw):
    reader = RpuReader(path, **kw)
    with pytest.raises(FileRejected) as exc:
        list(reader.visits())
    return exc.value.problem


def line_of(data: bytes | str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the n-th occurrence of needle."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    pos = -1
    for _ in range(occurrence):
        pos = text.index(needle, pos + 1)
    return text.count("\n", 0, pos) + 1


# --- the plain file ---------------------------------------------------------------------------------------------


def test_plain_file_is_read(tmp_path):
    data = rpu_file([visit(), visit(SEXE="F", LISTE_DA=["I10", "E119"], LISTE_ACTES=[])])
    reader, visits = read(write(tmp_path, data))
    h = reader.header
    assert (h.finess, h.ordre, h.extract, h.datedebut, h.datefin) == ("990000127", "0", "02/11/2026 03:10:00",
                                                                        "26/10/2026", "01/11/2026")
    assert h.line == line_of(data, "<ETABLISSEMENT>")
    assert [v.idx for v in visits] == [1, 2]
    assert [v.line for v in visits] == [line_of(data, "<PATIENT>", 1), line_of(data, "<PATIENT>", 2)]
    v1, v2 = visits
    assert v1.items["CP"] == "75012" and v1.items["ENTREE"] == "01/11/2026 10:12" and v1.items["DESTINATION"] == ""
    assert v1.da == ["I10"] and v1.actes == ["DEQP003"] and v1.extra == {}
    assert v2.items["SEXE"] == "F" and v2.da == ["I10", "E119"] and v2.actes == []
    assert reader.warnings == [] and reader.visits_read == 2
    assert "LISTE_DA" not in v1.items and "LISTE_ACTES" not in v1.items


# --- real-world variants ----------------------------------------------------------------------------------------


def test_one_passages_per_patient(tmp_path):
    data = rpu_file([visit(CP="75001"), visit(CP="75002"), visit(CP="75003")], one_passages_per_patient=True)
    assert data.count(b"<PASSAGES>") == 3
    reader, visits = read(write(tmp_path, data))
    assert [v.items["CP"] for v in visits] == ["75001", "75002", "75003"]
    assert [v.idx for v in visits] == [1, 2, 3]
    report = check_file(write(tmp_path, data, "b.xml"))
    assert report.accepted and report.visits == 3


def test_empty_datefin(tmp_path):
    data = rpu_file([visit(ENTREE="30/10/2026 08:00"), visit(ENTREE="31/10/2026 09:00")], fin="")
    reader, visits = read(write(tmp_path, data))
    assert reader.header.datefin == "" and reader.header.datedebut == "26/10/2026"
    report = check_file(write(tmp_path, data, "b.xml"))
    assert report.accepted and report.warnings == []
    assert str(report.period_start) == "2026-10-26" and str(report.period_end) == "2026-10-31"


def test_regional_extra_elements_kept_raw(tmp_path):
    data = rpu_file([visit(HMED="01/11/2026 10:30", CIRCONSTANCE="chute & <malaise>", ENTREE_UHCD="")])
    data = data.replace(b"<ENTREE_UHCD></ENTREE_UHCD>",
                        b"<ENTREE_UHCD></ENTREE_UHCD><MODE_SORTIE_UHCD><CODE>8</CODE><LIB>domicile</LIB>"
                        b"</MODE_SORTIE_UHCD>")
    reader, (v,) = read(write(tmp_path, data))
    assert v.extra["HMED"] == "01/11/2026 10:30"
    assert v.extra["CIRCONSTANCE"] == "chute & <malaise>"
    assert v.extra["ENTREE_UHCD"] == ""
    assert v.extra["MODE_SORTIE_UHCD"] == "<MODE_SORTIE_UHCD><CODE>8</CODE><LIB>domicile</LIB></MODE_SORTIE_UHCD>"
    assert set(v.extra) == {"HMED", "CIRCONSTANCE", "ENTREE_UHCD", "MODE_SORTIE_UHCD"}
    assert "HMED" not in v.items
    assert check_file(write(tmp_path, data, "b.xml")).accepted


def test_extra_header_elements_kept(tmp_path):
    data = rpu_file([visit()], header_extra="<LOGICIEL>URQUAL 3.2</LOGICIEL>")
    reader, _ = read(write(tmp_path, data))
    assert reader.header.extra == {"LOGICIEL": "URQUAL 3.2"}


def test_seconds_in_entree_and_sortie(tmp_path):
    data = rpu_file([visit(ENTREE="01/11/2026 10:12:33", SORTIE="01/11/2026 13:00:59")])
    _, (v,) = read(write(tmp_path, data))
    assert v.items["ENTREE"] == "01/11/2026 10:12:33"
    rows = []

    class Sink:
        def visit(self, row):
            rows.append(row)

        def rejected(self, raw, problem):  # pragma: no cover - must not happen
            raise AssertionError(problem)

    report = check_file(write(tmp_path, data, "b.xml"), sink=Sink())
    assert report.accepted and report.flags == {}
    (row,) = rows
    row = dict(zip(VISIT_COLUMNS, row))
    assert row["entree"].isoformat() == "2026-11-01T10:12:33"
    assert row["sortie"].isoformat() == "2026-11-01T13:00:59"


def test_no_declaration_utf8(tmp_path):
    data = rpu_file([visit(COMMUNE="Évry-Courcouronnes")], declaration=False)
    assert not data.startswith(b"<?xml") and "É".encode() in data
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["COMMUNE"] == "Évry-Courcouronnes"
    assert reader.warnings == []


def test_no_declaration_windows_1252(tmp_path):
    commune = "L’Haÿ-les-Roses, Évry"
    data = rpu_file([visit(COMMUNE=commune)], declaration=False, encoding="WINDOWS-1252")
    assert not data.startswith(b"<?xml") and b"\x92" in data   # typographic apostrophe in cp1252
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["COMMUNE"] == commune
    assert [w.rule for w in reader.warnings] == ["ENCODING"]
    assert "Windows-1252" in reader.warnings[0].message
    report = check_file(write(tmp_path, data, "b.xml"))
    assert report.accepted and [w.rule for w in report.warnings] == ["ENCODING"]


def test_declared_iso_8859_1(tmp_path):
    data = rpu_file([visit(COMMUNE="Évry Cœur")], encoding="ISO-8859-1")
    assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    assert b"\xc9vry" in data and b"&#339;" in data   # É as one Latin-1 byte, œ as a character reference
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["COMMUNE"] == "Évry Cœur"
    assert reader.warnings == []


def test_declared_utf8_with_cp1252_bytes(tmp_path):
    data = rpu_file([visit(COMMUNE="Évry’")], encoding="WINDOWS-1252").replace(b"WINDOWS-1252", b"UTF-8")
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["COMMUNE"] == "Évry’"
    assert [w.rule for w in reader.warnings] == ["ENCODING"]
    assert "déclaré UTF-8" in reader.warnings[0].message


def test_utf8_bom(tmp_path):
    data = b"\xef\xbb\xbf" + rpu_file([visit(COMMUNE="Évry")], declaration=False)
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["COMMUNE"] == "Évry" and reader.warnings == []


def test_unknown_declared_encoding_is_rejected_not_crashing(tmp_path):
    data = rpu_file([visit()]).replace(b'encoding="UTF-8"', b'encoding="x-maison"')
    problem = rejected(write(tmp_path, data))
    assert problem.rule == "NOT_WELL_FORMED" and "x-maison" in problem.message
    report = check_file(write(tmp_path, data, "b.xml"))
    assert not report.accepted and report.errors[0].rule == "NOT_WELL_FORMED"


def test_empty_elements(tmp_path):
    data = rpu_file([visit()]).replace(b"<DP>R074</DP>", b"<DP/>").replace(b"<LISTE_DA><DA>I10</DA></LISTE_DA>",
                                                                          b"<LISTE_DA/>")
    data = data.replace(b"<DESTINATION></DESTINATION>", b"<DESTINATION />")
    assert b"<DP/>" in data and b"<LISTE_DA/>" in data
    _, (v,) = read(write(tmp_path, data))
    assert v.items["DP"] == "" and v.items["DESTINATION"] == "" and v.da == []
    report = check_file(write(tmp_path, data, "b.xml"))
    assert report.accepted and report.flags == {}


def test_whitespace_around_values(tmp_path):
    data = rpu_file([visit()])
    data = (data.replace(b"<SEXE>M</SEXE>", b"<SEXE> M </SEXE>")
                .replace(b"<ENTREE>01/11/2026 10:12</ENTREE>", b"<ENTREE>\n  01/11/2026 10:12\n</ENTREE>")
                .replace(b"<DA>I10</DA>", b"<DA>\tI10 </DA><DA>  </DA>")
                .replace(b"<PATIENT>", b"<PATIENT>\n  "))
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["SEXE"] == "M"
    assert v.items["ENTREE"] == "01/11/2026 10:12"
    assert v.da == ["I10"]   # an empty DA is no diagnosis
    report = check_file(write(tmp_path, data, "b.xml"))
    assert report.accepted and report.flags == {} and report.visits_rejected == 0


def test_comments_and_processing_instructions_ignored(tmp_path):
    data = rpu_file([visit()]).replace(b"<PATIENT>", b"<!-- export --><?producer x?><PATIENT><!-- c -->")
    _, (v,) = read(write(tmp_path, data))
    assert v.extra == {} and v.items["CP"] == "75012"


# --- safety -----------------------------------------------------------------------------------------------------


def test_billion_laughs_doctype_rejected(tmp_path):
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    data = rpu_file([visit()]).replace(b"<OSCOUR>", f"<!DOCTYPE OSCOUR [{entities}]>\n<OSCOUR>".encode())
    data = data.replace(b"PARIS", b"&a9;")
    problem = rejected(write(tmp_path, data))
    assert problem.rule == "DOCTYPE_FORBIDDEN"
    report = check_file(write(tmp_path, data, "b.xml"))
    assert not report.accepted and [e.rule for e in report.errors] == ["DOCTYPE_FORBIDDEN"]


def test_doctype_after_a_long_prologue_rejected(tmp_path):
    # the prologue check reads 64 KiB; a DOCTYPE hidden after a longer comment must still reject the file
    data = rpu_file([visit()]).replace(b"<OSCOUR>", b"<!--" + b"x" * 70_000 + b"-->\n<!DOCTYPE OSCOUR>\n<OSCOUR>")
    assert rejected(write(tmp_path, data)).rule == "DOCTYPE_FORBIDDEN"


class CollectingSink:
    def __init__(self):
        self.rows, self.rejects = [], []

    def visit(self, row):
        self.rows.append(row)

    def rejected(self, raw, problem):
        self.rejects.append((raw, problem))


SECRET = "SECRET-CONTENT-7f3a9c"


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


def assert_secret_nowhere(report, sink):
    everything = repr(report.as_dict()) + repr(sink.rows) + repr([(r.items, r.extra, p) for r, p in sink.rejects])
    assert SECRET not in everything


@pytest.mark.parametrize("prefix", ["", "<!--" + "p" * 70_000 + "-->\n"])
def test_external_entity_not_resolved(tmp_path, secret_file, prefix):
    doctype = f'{prefix}<!DOCTYPE OSCOUR [<!ENTITY xxe SYSTEM "{secret_file.as_uri()}">]>\n'
    data = rpu_file([visit()]).replace(b"<OSCOUR>", doctype.encode() + b"<OSCOUR>").replace(b"PARIS", b"&xxe;")
    sink = CollectingSink()
    report = check_file(write(tmp_path, data), sink=sink)
    assert not report.accepted and report.errors[0].rule == "DOCTYPE_FORBIDDEN"
    assert_secret_nowhere(report, sink)


def test_undeclared_entity_is_not_well_formed(tmp_path):
    data = rpu_file([visit(), visit()])
    data = data.replace(b"PARIS", b"&xxe;")
    problem = rejected(write(tmp_path, data))
    assert problem.rule == "NOT_WELL_FORMED" and "xxe" in problem.message
    assert problem.line == line_of(data, "&xxe;")


def test_xinclude_not_resolved_in_an_item(tmp_path, secret_file):
    xi = f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{secret_file}" parse="text"/>'
    data = rpu_file([visit()]).replace(b"<COMMUNE>PARIS</COMMUNE>", f"<COMMUNE>{xi}</COMMUNE>".encode())
    sink = CollectingSink()
    report = check_file(write(tmp_path, data), sink=sink)
    assert not report.accepted and report.errors[0].rule == "SCHEMA"   # an element inside a simple item
    assert_secret_nowhere(report, sink)


def test_xinclude_not_resolved_in_an_extra_element(tmp_path, secret_file):
    xi = f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{secret_file}" parse="text"/>'
    data = rpu_file([visit()]).replace(b"</PATIENT>", f"<HMED>{xi}</HMED></PATIENT>".encode())
    sink = CollectingSink()
    report = check_file(write(tmp_path, data), sink=sink)
    assert report.accepted
    (row,) = sink.rows
    extra = dict(zip(VISIT_COLUMNS, row))["extra"]
    assert "xi:include" in extra["HMED"] and SECRET not in extra["HMED"]
    assert_secret_nowhere(report, sink)


def test_file_too_large(tmp_path):
    data = rpu_file([visit()] * 3)
    path = write(tmp_path, data)
    problem = rejected(path, max_bytes=len(data) - 1)
    assert problem.rule == "FILE_TOO_LARGE"
    _, visits = read(path, max_bytes=len(data))   # exactly at the limit: read
    assert len(visits) == 3


def test_file_too_large_message_uses_the_configured_unit(tmp_path):
    # intake.max_file_mb is in MiB: the default 512 must read "512 Mo" (not 537, in units of 10^6 bytes)
    path = tmp_path / "huge.xml"
    with open(path, "wb") as fh:
        fh.truncate(600 * 1024 * 1024)   # sparse: no disk space used, never read
    problem = rejected(path, max_bytes=512 * 1024 * 1024)
    assert problem.rule == "FILE_TOO_LARGE"
    assert problem.message == "fichier de 600 Mo, au-delà de la limite de 512 Mo"


def test_empty_file(tmp_path):
    problem = rejected(write(tmp_path, b""))
    assert problem.rule == "NOT_WELL_FORMED" and "vide" in problem.message


# --- not well-formed: the right line ------------------------------------------------------------------------------


def test_tag_mismatch_names_line_and_visit(tmp_path):
    data = rpu_file([visit(), visit(), visit()]).decode()
    bad = data.replace("<SEXE>M</SEXE>", "<SEXE>M</SEX>", 2).replace("<SEXE>M</SEX>", "<SEXE>M</SEXE>", 1)
    problem = rejected(write(tmp_path, bad.encode()))
    assert problem.rule == "NOT_WELL_FORMED"
    assert problem.line == line_of(bad, "</SEX>") == line_of(bad, "<PATIENT>", 2)
    assert problem.visit == 2
    assert "SEX" in problem.message
    assert str(problem).startswith(f"[NOT_WELL_FORMED] ligne {problem.line}, passage n°2 : ")


def test_invalid_character_names_line(tmp_path):
    data = rpu_file([visit(), visit()]).replace(b"<MOTIF>CARDIO04</MOTIF>", b"<MOTIF>CARDIO\x0104</MOTIF>", 1)
    problem = rejected(write(tmp_path, data))
    assert problem.rule == "NOT_WELL_FORMED" and problem.line == line_of(data, "<PATIENT>", 1)


def test_truncated_file_rejected(tmp_path):
    data = rpu_file([visit() for _ in range(10)])
    for cut in (len(data) // 2, len(data) - len(b"</OSCOUR>\n"), 120):
        path = write(tmp_path, data[:cut], f"cut{cut}.xml")
        problem = rejected(path)
        assert problem.rule == "NOT_WELL_FORMED", cut
        assert problem.line == data[:cut].count(b"\n") + 1, cut   # where the data stops
        report = check_file(path)
        assert not report.accepted and report.errors[0].rule == "NOT_WELL_FORMED"
        assert report.per_day == {}


def test_trailing_content_after_root(tmp_path):
    data = rpu_file([visit()]) + b"<OSCOUR/>\n"
    problem = rejected(write(tmp_path, data))
    assert problem.rule == "NOT_WELL_FORMED" and problem.line == data.count(b"\n")


def test_error_message_not_polluted_by_earlier_parses(tmp_path):
    # libxml2 keeps a per-thread error log: a schema error read before must not be reported for another file
    schema_bad = rpu_file([visit()]).replace(b"<DP>R074</DP>", b"<DP><X/></DP>")
    assert rejected(write(tmp_path, schema_bad, "a.xml")).rule == "SCHEMA"
    data = rpu_file([visit()]).replace(b"</CP>", b"</CPX>")
    problem = rejected(write(tmp_path, data, "b.xml"))
    assert problem.rule == "NOT_WELL_FORMED" and "CPX" in problem.message and "DP" not in problem.message
    assert problem.line == line_of(data, "</CPX>")


def test_without_schema(tmp_path):
    data = rpu_file([visit()]).replace(b"<DP>R074</DP>", b"<DP><X/></DP>")
    _, (v,) = read(write(tmp_path, data), with_schema=False)
    assert v.items["DP"] == ""
    truncated = rpu_file([visit(), visit()])[:-40]
    assert rejected(write(tmp_path, truncated, "t.xml"), with_schema=False).rule == "NOT_WELL_FORMED"


# --- schema violations: SCHEMA naming the line and the visit ----------------------------------------------------


def three_visits() -> str:
    return rpu_file([visit(CP="75001"), visit(CP="75002"), visit(CP="75003")]).decode()


def test_element_inside_a_simple_item(tmp_path):
    data = three_visits().replace("<CP>75002</CP>", "<CP><X>75002</X></CP>")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA"
    assert problem.line == line_of(data, "<CP><X>") and problem.visit == 2
    assert "'CP'" in problem.message
    s = str(problem)
    assert f"ligne {problem.line}" in s and "passage n°2" in s


def test_element_inside_a_simple_item_multiline(tmp_path):
    data = three_visits().replace("<CP>75003</CP>", "\n<CP>75003</CP>").replace("<DP>R074</DP>", "\n\n<DP>R<b/></DP>")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and problem.visit == 1
    assert problem.line == line_of(data, "<DP>R<b/>")


def test_item_too_long(tmp_path):
    data = three_visits().replace("<MOTIF>CARDIO04</MOTIF>", "<MOTIF>" + "A" * 1001 + "</MOTIF>", 1)
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and problem.visit == 1 and problem.line == line_of(data, "<PATIENT>", 1)


def test_element_in_a_liste(tmp_path):
    data = three_visits().replace("<LISTE_ACTES><ACTE>DEQP003</ACTE>", "<LISTE_ACTES><ACTE>DEQP003</ACTE><DA>I10</DA>")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and problem.visit == 1 and "ACTE" in problem.message


def test_unknown_element_directly_under_passages(tmp_path):
    data = three_visits()
    pos = data.index("<PATIENT>", data.index("<PATIENT>") + 1)
    data = data[:pos] + "<COMMENTAIRE>envoi manuel</COMMENTAIRE>\n" + data[pos:]
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA"
    assert problem.line == line_of(data, "<COMMENTAIRE>")
    assert problem.visit == 2   # found where visit n°2 was expected
    assert "COMMENTAIRE" in problem.message
    s = str(problem)
    assert f"ligne {problem.line}" in s and "passage n°2" in s


def test_unknown_element_between_passages_blocks(tmp_path):
    data = rpu_file([visit(), visit()], one_passages_per_patient=True).decode()
    data = data.replace("</PASSAGES>\n<PASSAGES>", "</PASSAGES>\n<AUTRE/>\n<PASSAGES>")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and problem.line == line_of(data, "<AUTRE/>") and "AUTRE" in problem.message


def header_block(data: str) -> str:
    return re.search(r"<ETABLISSEMENT>.*?</ETABLISSEMENT>\n", data).group(0)


def test_etablissement_after_passages(tmp_path):
    data = three_visits()
    hdr = header_block(data)
    data = data.replace(hdr, "").replace("</PASSAGES>\n", "</PASSAGES>\n" + hdr)
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and "ETABLISSEMENT" in problem.message
    assert problem.line == line_of(data, "<PATIENT>") and problem.visit == 1
    assert check_file(write(tmp_path, data.encode(), "b.xml")).accepted is False


def test_missing_etablissement(tmp_path):
    data = three_visits()
    data = data.replace(header_block(data), "")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and "ETABLISSEMENT" in problem.message
    assert problem.line == line_of(data, "<PATIENT>") and problem.visit == 1


@pytest.mark.parametrize("where", ["after", "missing"])
def test_etablissement_misplaced_in_a_file_without_visit(tmp_path, where):
    data = rpu_file([]).decode()
    hdr = header_block(data)
    data = data.replace(hdr, "")
    if where == "after":
        data = data.replace("</PASSAGES>\n", "</PASSAGES>\n" + hdr)
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and "ETABLISSEMENT" in problem.message
    assert problem.line == line_of(data, "<PASSAGES>")


def test_wrong_root_element(tmp_path):
    data = three_visits().replace("OSCOUR>", "RPU>")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and "RPU" in problem.message and problem.line is not None


def test_header_item_with_children(tmp_path):
    data = three_visits().replace("<ORDRE>0</ORDRE>", "<ORDRE><N>0</N></ORDRE>")
    problem = rejected(write(tmp_path, data.encode()))
    assert problem.rule == "SCHEMA" and problem.visit is None and problem.line == line_of(data, "<ORDRE>")
    assert "ETABLISSEMENT" in problem.message


# --- streaming ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("one_passages_per_patient", [False, True])
def test_streaming_keeps_the_tree_small(tmp_path, monkeypatch, one_passages_per_patient):
    n = 20_000
    data = rpu_file([visit()] * n, one_passages_per_patient=one_passages_per_patient)
    path = write(tmp_path, data)
    seen = {}
    real_iterparse = etree.iterparse

    class SpyIterparse:
        """iterparse that remembers the last element it gave, to look at the tree being built."""

        def __init__(self, *args, **kwargs):
            self._it = real_iterparse(*args, **kwargs)

        def __iter__(self):
            return self

        def __next__(self):
            event, el = next(self._it)
            seen["el"] = el
            return event, el

        def __getattr__(self, name):
            return getattr(self._it, name)

    class EtreeSpy:
        iterparse = SpyIterparse

        def __getattr__(self, name):
            return getattr(etree, name)

    monkeypatch.setattr(parse_module, "etree", EtreeSpy())
    reader = RpuReader(path)
    count, largest = 0, 0
    for v in reader.visits():
        count += 1
        if count % 500 == 0:
            root = seen["el"].getroottree().getroot()
            largest = max(largest, len(root) + sum(len(child) for child in root))
    root = seen["el"].getroottree().getroot()
    assert count == n and reader.visits_read == n
    assert root.tag == "OSCOUR"
    assert len(root) <= 2   # ETABLISSEMENT and (the last, emptied) PASSAGES
    assert sum(len(child) for child in root if child.tag == "PASSAGES") <= 1
    # while reading, only what the parser has read ahead is in memory, never the visits already read
    assert largest < 1000


def test_declared_iso_8859_1_with_windows_1252_bytes_reads_them_as_windows_1252(tmp_path):
    # producers label Latin-1 but write ’ œ € as Windows-1252 bytes (0x92, 0x9c, 0x80): read them as such
    data = rpu_file([visit(COMMUNE="L’Haÿ Œuvre 5€")], encoding="WINDOWS-1252").replace(
        b'encoding="WINDOWS-1252"', b'encoding="ISO-8859-1"')
    assert b"\x92" in data and b"\x8c" in data and b"\x80" in data
    reader, (v,) = read(write(tmp_path, data))
    assert v.items["COMMUNE"] == "L’Haÿ Œuvre 5€"
