"""Property-based fuzzing (hypothesis) of the parser and the checks over mutated real-shaped files.

Every input is judged — accepted, or rejected with a named rule — nothing raises, and memory stays bounded
whatever a visit holds. The examples are derandomized and bounded in number so that CI sees the same inputs
every run (a failure found here is reproducible as is)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from datetime import date
from functools import lru_cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from rpu import rpu_format as F
from rpu import synth
from rpu.checks import VISIT_COLUMNS, check_file
from rpu.config import PROJECT_DIR, get_region
from rpu.problems import FILE, RULES, VISIT, WARNING

REGION = get_region("demo", PROJECT_DIR / "config" / "regions")
SENDER = REGION.establishments[2].finess
FUZZ = settings(max_examples=1000, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    """Small real-shaped files as the synthetic generator writes them, in the variants real producers send."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, variant in enumerate((None, "latin1", "cp1252_undeclared", "one_passages_per_patient", "seconds",
                                     "empty_datefin", "regional_extras", "no_declaration")):
            path = synth.daily_file(Path(tmp) / str(i), SENDER, date(2026, 11, 2), seed=i, mean_per_day=2,
                                    variant=variant)
            out.append(path.read_bytes())
    return tuple(out)


TAGS = [t.encode() for t in (*F.ITEMS, "PATIENT", "PASSAGES", "ETABLISSEMENT", "OSCOUR", "DA", "ACTE",
                             *F.HEADER_ITEMS)]
NASTY = [b"", b"&", b"<", b"]]>", b"&amp;", b"&#0;", b"&#x1F600;", b"\x00", b"\xff\xfe", b"\xe9", b"\xc3\xa9",
         b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"<?xml version='1.0' encoding='klingon'?>", b"40000", b"-1",
         b"99/99/9999 99:99", b"31/02/2026 10:00", b"01/01/0001 00:00", b"\r\n", b"\t", b" " * 50,
         b"<X/>", b"</PATIENT>", b"<PATIENT>", b"9" * 1200]


@st.composite
def mutated(draw) -> bytes:
    """A seed file with a few mutations: byte edits, an item's value replaced, an element dropped or repeated,
    a tag renamed, a truncation."""
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "value", "drop", "repeat", "rename", "truncate"]))
        n = len(data)
        if n == 0:
            break
        at = draw(st.integers(0, n - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(NASTY), st.binary(max_size=40)))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 200))]
        elif kind == "truncate":
            del data[at:]
        else:
            tag = draw(st.sampled_from(TAGS))
            start = data.find(b"<" + tag + b">", at)
            if start < 0:
                start = data.find(b"<" + tag + b">")
            if start < 0:
                continue
            end = data.find(b"</" + tag + b">", start)
            if end < 0:
                continue
            end += len(tag) + 3
            inner = slice(start + len(tag) + 2, end - len(tag) - 3)
            if kind == "value":
                data[inner] = draw(st.one_of(st.sampled_from(NASTY),
                                             st.text(max_size=30).map(lambda t: t.encode("utf-8", "replace"))))
            elif kind == "drop":
                del data[start:end]
            elif kind == "repeat":
                data[end:end] = bytes(data[start:end]) * draw(st.integers(1, 50))
            else:
                data[start + 1:start + 1 + len(tag)] = draw(st.sampled_from(TAGS + [b"HMED", b"x-y", b"_"]))
    return bytes(data)


class Sink:
    def __init__(self):
        self.rows = 0
        self.rejects = 0

    def visit(self, row):
        assert len(row) == len(VISIT_COLUMNS)
        self.rows += 1

    def rejected(self, raw, problem):
        assert problem.level == VISIT
        self.rejects += 1


@FUZZ
@given(data=mutated())
def test_every_mutated_file_is_judged_and_nothing_raises(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "f.xml"
    path.write_bytes(data)
    sink = Sink()
    report = check_file(path, REGION, SENDER, sink)          # must not raise, whatever the bytes
    assert all(p.rule in RULES for p in report.errors + report.warnings)
    assert all(p.level == WARNING for p in report.warnings)
    if report.accepted:      # …and what is accepted can be stored: ORDRE is a smallint of the database
        assert 0 <= report.ordre <= 32767 and report.extract is not None
        assert all(p.level == VISIT for p in report.errors)
        assert sink.rejects == report.visits_rejected and sink.rows == report.visits - report.visits_rejected
        assert sum(report.per_day.values()) == sink.rows
        if report.period_start is not None:
            assert report.period_start <= report.period_end
            assert all(report.period_start <= d <= report.period_end for d in report.per_day)
    else:
        assert report.errors and report.errors[0].level == FILE, report.errors   # a named file rule
        assert report.per_day == {}


PEAK = textwrap.dedent("""
    import json, sys
    from rpu.checks import check_file
    from rpu.config import PROJECT_DIR, get_region
    region = get_region("demo", PROJECT_DIR / "config" / "regions")
    report = check_file(sys.argv[1], region, sys.argv[2])
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024
    print(json.dumps({"accepted": report.accepted, "rules": [p.rule for p in report.errors], "peak_mb": peak}))
""")


@settings(max_examples=4, derandomize=True, deadline=None, database=None)
@given(mb=st.sampled_from([96, 48, 24]), child=st.sampled_from([b"<L>%s</L>", b"%s", b"<A><B>%s</B></A>"]),
       where=st.sampled_from([b"</ORIENT>", b"</COMMUNE>"]))
def test_memory_stays_bounded_whatever_a_visit_holds(mb, child, where, tmp_path_factory):
    """One visit of tens of MB (many children, or text runs of 9 KB): judged in a fresh process whose peak
    memory does not follow the visit's size."""
    path = tmp_path_factory.mktemp("big") / "f.xml"
    head, tail = seeds()[0].split(where, 1)
    piece = child % (b"y" * 9000) if b"%s" in child else child
    with open(path, "wb") as fh:
        fh.write(head + where + b"<DOSSIER>")
        for _ in range(mb * 1024 * 1024 // len(piece)):
            fh.write(piece)
        fh.write(b"</DOSSIER>" + tail)
    out = subprocess.run([sys.executable, "-c", PEAK, str(path), SENDER], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert not got["accepted"] and got["rules"][0] in ("VISIT_TOO_LARGE", "NOT_WELL_FORMED"), got
    assert got["peak_mb"] < 200, f"peak {got['peak_mb']} MiB for a visit of {mb} MB"
