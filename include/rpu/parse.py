"""Bytes of an RPU file → header + a stream of raw visits, safely and in constant memory.

Safety: no DTD (a DOCTYPE rejects the file), no entity expansion, no network, a size bound, libxml2's own
limits kept (no huge_tree). Memory: lxml's iterparse, each PATIENT cleared and detached once read.
Encodings: the XML declaration is honoured; without one (or when a file declared UTF-8 is not valid
UTF-8, which real producers do), UTF-8 if the bytes are valid UTF-8, else Windows-1252 with a warning.
The XSD is checked in the same pass; when it fails, a second pass finds the line and visit at fault.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lxml import etree

from rpu import rpu_format as F
from rpu.problems import Problem
from rpu.xsd import schema

CHUNK = 1 << 20
DECL_RE = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", re.S)
UTF8_NAMES = {"utf-8", "utf8"}
# names lxml/libxml2 may not know or that real files misuse; cp1252 is a superset for printable text
# (as browsers do, WHATWG encoding standard: files labelled Latin-1 or ASCII hold Windows-1252 bytes in practice)
ENCODING_ALIASES = {"ascii": "windows-1252", "us-ascii": "windows-1252", "latin1": "windows-1252",
                    "latin-1": "windows-1252", "iso-8859-1": "windows-1252", "iso8859-1": "windows-1252",
                    "cp1252": "windows-1252"}


class ParserStopped(RuntimeError):
    """The forked parser died (killed, out of memory): a fault of ours, not of the file."""


class _VisitTooLarge(Exception):
    """Raised by _CountingReader.read inside lxml's parse loop (lxml hands it back out of iterparse)."""


class _CountingReader:
    """The file as lxml reads it (in chunks of 32 KiB), counting the bytes handed over so far: a visit (or a
    block) may not take more than `budget` bytes past `mark`, the count at the end of the last visit or block
    (F.MAX_VISIT_BYTES). Checked here, once per chunk, rather than at each element's end: the parse loop then
    only sees the ends of PATIENT, PASSAGES, ETABLISSEMENT and the root (lxml filters the rest in C)."""

    def __init__(self, fh, budget: int):
        self.fh = fh
        self.consumed = 0
        self.mark = 0
        self.budget = budget

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.consumed += len(data)
        if self.consumed - self.mark > self.budget:
            raise _VisitTooLarge()
        return data


def _line_at(path: Path, offset: int) -> int:
    """The line (1-based) of byte `offset` of the file."""
    lines = 1
    with open(path, "rb") as fh:
        while offset > 0:
            chunk = fh.read(min(offset, 1 << 20))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            offset -= len(chunk)
    return lines


class FileRejected(Exception):
    """A file-level problem: the whole file is rejected."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class Header:
    finess: str = ""
    ordre: str = ""
    extract: str = ""
    datedebut: str = ""
    datefin: str = ""
    line: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RawVisit:
    """One PATIENT as read: item → stripped text ('' when empty or absent)."""
    idx: int                  # 1-based position of the visit in the file
    line: int                 # line of <PATIENT> in the file
    items: dict[str, str]
    da: list[str]
    actes: list[str]
    extra: dict[str, str]     # regional elements, kept raw (text, or XML when they have children)
    too_long: str | None = None   # first item longer than F.MAX_ITEM_CHARS (its value is cut to that length)


def sniff_encoding(path: Path) -> tuple[str, str | None]:
    """(encoding to parse with, warning or None). Reads the file once only when validity must be known."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", None
    m = DECL_RE.match(head)
    declared = m.group(1).decode("ascii").lower() if m else None
    if declared and declared not in UTF8_NAMES:
        return ENCODING_ALIASES.get(declared, declared), None
    if _is_valid_utf8(path):
        return "utf-8", None
    what = "déclaré UTF-8" if declared else "sans déclaration d'encodage"
    return "windows-1252", (f"fichier {what} mais contenant des octets invalides en UTF-8 : "
                            "lu en Windows-1252")


def _is_valid_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _doctype_forbidden() -> FileRejected:
    return FileRejected(Problem("DOCTYPE_FORBIDDEN", "le fichier contient une déclaration DOCTYPE, "
                                "interdite (risque d'entités externes) : supprimez-la", line=1))


def _check_prologue(path: Path, encoding: str) -> None:
    """Reject DOCTYPE (entity tricks live there); cheap: only the bytes before the root element.

    A prologue longer than what is read here (a DOCTYPE after 64 KiB of comments) is caught by the reader
    on the ETABLISSEMENT block, from the parsed document's doctype."""
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    text = head.decode(encoding if encoding != "utf-16" else "utf-16", errors="replace")
    root_at = re.search(r"<[A-Za-z_]", text)
    prologue = text[: root_at.start()] if root_at else text
    if "<!DOCTYPE" in prologue.upper():
        raise _doctype_forbidden()


def _text(el) -> str:
    t = el.text
    return t.strip() if t else ""


def _raw(el) -> str:
    if len(el):
        return etree.tostring(el, encoding="unicode", with_tail=False)
    return _text(el)


class RpuReader:
    """Iterate the visits of a file; `header` is set once the ETABLISSEMENT block has been read.

    `with_schema=False` skips the XSD (used by the benchmark's parse-only measure)."""

    def __init__(self, path: Path | str, *, max_bytes: int | None = None, with_schema: bool = True):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.with_schema = with_schema
        self.header: Header | None = None
        self.warnings: list[Problem] = []
        self.visits_read = 0

    def visits(self) -> Iterator[RawVisit]:
        """Stream the visits; raises FileRejected on a file-level problem (possibly after some visits)."""
        size = self.path.stat().st_size
        if self.max_bytes is not None and size > self.max_bytes:
            mib = 1024 * 1024   # the unit of the region's intake.max_file_mb
            raise FileRejected(Problem("FILE_TOO_LARGE", f"fichier de {size / mib:.0f} Mo, au-delà de la limite "
                                       f"de {self.max_bytes / mib:.0f} Mo"))
        if size == 0:
            raise FileRejected(Problem("NOT_WELL_FORMED", "fichier vide"))
        encoding, warning = sniff_encoding(self.path)
        try:  # a declared encoding neither Python nor libxml2 knows would escape as a LookupError
            codecs.lookup(encoding)
            etree.XMLParser(encoding=encoding)
        except LookupError:
            raise FileRejected(Problem("NOT_WELL_FORMED", f"encodage déclaré inconnu : {encoding!r}",
                                       line=1)) from None
        if warning:
            self.warnings.append(Problem("ENCODING", warning))
        _check_prologue(self.path, encoding)
        kwargs = dict(events=("end",), resolve_entities=False, no_network=True, load_dtd=False,
                      remove_comments=True, remove_pis=True, encoding=encoding)
        if self.with_schema:
            kwargs["schema"] = schema()
        source = open(self.path, "rb")
        # bytes handed to the parser by the end of the last visit (or block): a visit is never built whole
        # in memory beyond F.MAX_VISIT_BYTES, plus one read chunk, plus one text node (libxml2: 10 MB at most)
        counted = _CountingReader(source, F.MAX_VISIT_BYTES + 32 * 1024)
        it = etree.iterparse(counted, tag=(F.PATIENT, F.PASSAGES, F.HEADER, F.ROOT), **kwargs)
        idx = 0
        el = None
        items_known = frozenset(F.SIMPLE_ITEMS)
        list_items = F.LIST_ITEMS
        max_item = F.MAX_ITEM_CHARS
        try:
            for _, el in it:
                tag = el.tag
                if tag == F.PATIENT:
                    idx += 1
                    counted.mark = counted.consumed
                    if self.header is None:
                        raise FileRejected(Problem(
                            "SCHEMA", "le bloc ETABLISSEMENT doit précéder les PASSAGES", line=el.sourceline,
                            visit=idx))
                    items: dict[str, str] = {}
                    da: list[str] = []
                    actes: list[str] = []
                    extra: dict[str, str] = {}
                    too_long = None
                    for child in el:
                        ctag = child.tag
                        if ctag in items_known:
                            v = child.text
                            if v:
                                v = v.strip()
                                if len(v) > max_item:
                                    v, too_long = v[:max_item], too_long or ctag
                            else:
                                v = ""
                            items[ctag] = v
                        elif ctag in list_items:
                            target = da if ctag == "LISTE_DA" else actes
                            for sub in child:
                                v = _text(sub)
                                if v:
                                    if len(v) > max_item:
                                        v, too_long = v[:max_item], too_long or ctag
                                    target.append(v)
                        elif isinstance(ctag, str):
                            v = _raw(child)
                            if len(v) > max_item:
                                v, too_long = v[:max_item], too_long or ctag
                            extra[ctag] = v
                    yield RawVisit(idx, el.sourceline or 0, items, da, actes, extra, too_long)
                    el.clear()
                    parent = el.getparent()
                    # detach what was read so the tree does not grow (constant memory)
                    while el.getprevious() is not None:
                        del parent[0]
                elif tag == F.PASSAGES:
                    counted.mark = counted.consumed
                    # files with one PASSAGES per PATIENT: drop the emptied wrappers too
                    el.clear()
                    prev = el.getprevious()
                    while prev is not None and prev.tag == F.PASSAGES:
                        el.getparent().remove(prev)
                        prev = el.getprevious()
                elif tag == F.HEADER:
                    counted.mark = counted.consumed
                    if el.getroottree().docinfo.doctype:
                        raise _doctype_forbidden()
                    self.header = self._header(el)
            if el is None or el.getparent() is not None:
                # The root element was never closed (truncated file), yet libxml2 with a schema plugged in
                # (and resolve_entities=False) may end the stream without raising: find the error.
                raise FileRejected(self._schema_problem("document XML incomplet (fichier tronqué ?)",
                                                        rule="NOT_WELL_FORMED"))
            self.visits_read = idx
        except _VisitTooLarge:
            raise FileRejected(Problem(
                "VISIT_TOO_LARGE", f"plus de {F.MAX_VISIT_BYTES // 1024} Ko lus sans fin de passage "
                f"(passage n°{idx + 1}) : un passage ne peut pas être aussi volumineux",
                line=_line_at(self.path, counted.consumed), visit=idx + 1)) from None
        except etree.XMLSyntaxError as exc:
            raise FileRejected(self._locate(exc, it, idx)) from None
        finally:
            source.close()
        if self.header is None:
            raise FileRejected(Problem("SCHEMA", "bloc ETABLISSEMENT absent"))

    @staticmethod
    def _header(el) -> Header:
        h = Header(line=el.sourceline or 0)
        for child in el:
            if not isinstance(child.tag, str):
                continue
            if child.tag in F.HEADER_ITEMS:
                setattr(h, child.tag.lower(), _text(child))
            else:
                h.extra[child.tag] = _raw(child)
        return h

    def _locate(self, exc: etree.XMLSyntaxError, it, idx: int, second_pass: bool = False) -> Problem:
        """Turn a libxml2 error into a Problem naming the line and, when inside one, the visit."""
        # Only this parse's own log: exc.error_log is a copy of the thread's global log, which holds the errors
        # of earlier parses too.
        entries = list(getattr(it, "error_log", []) or [])
        schema_errors = [e for e in entries if e.domain_name == "SCHEMASV"]
        parser_errors = [e for e in entries if e.domain_name != "SCHEMASV"]
        if not entries and not second_pass:
            # libxml2 with a schema plugged in loses the parser error ("no element found", no line): find it
            # again without the schema.
            return self._schema_problem((exc.msg or str(exc)).split(" (")[0], rule="NOT_WELL_FORMED")
        if parser_errors or not schema_errors:
            first = parser_errors[0] if parser_errors else None
            line = (first.line if first else 0) or exc.lineno
            msg = first.message if first else (exc.msg or str(exc)).split(" (")[0]
            return Problem("NOT_WELL_FORMED", f"XML mal formé : {msg}", line=line or None,
                           visit=(idx + 1) if idx else None)
        # The streaming validator gives no line number: find it with a second, element-by-element pass.
        return self._schema_problem(schema_errors[0].message)

    def _schema_problem(self, first_message: str, rule: str = "SCHEMA") -> Problem:
        """Second pass, without the streaming validator, to find the line and the visit at fault: each PATIENT and
        the ETABLISSEMENT block are validated whole once closed; the two upper levels (OSCOUR, PASSAGES) through
        a skeleton of their children's tags, since iterparse reads ahead and a partly built parent may already
        hold later content (a foreign element among the PATIENTs, ETABLISSEMENT missing or misplaced)."""
        sch = schema()
        encoding, _ = sniff_encoding(self.path)
        idx = 0
        root_skel = None
        it = etree.iterparse(str(self.path), events=("end",), resolve_entities=False, no_network=True,
                             load_dtd=False, encoding=encoding)
        try:
            for _, el in it:
                tag = el.tag
                parent = el.getparent()
                if tag == F.PATIENT:
                    idx += 1
                target = where = visit = None
                if tag == F.PATIENT or tag == F.HEADER:
                    target = el
                    where, visit = (f"passage n°{idx}", idx) if tag == F.PATIENT else ("en-tête ETABLISSEMENT", None)
                elif parent is not None and parent.tag == F.PASSAGES and parent.getparent() is not None \
                        and parent.getparent().getparent() is None:
                    target = etree.Element(F.PASSAGES)
                    etree.SubElement(target, tag if isinstance(tag, str) else "_")
                    where, visit = "PASSAGES", idx + 1
                if target is not None and not sch.validate(target):
                    err = sch.error_log[0]
                    return Problem("SCHEMA", f"non conforme au schéma RPU ({where}) : {err.message}",
                                   line=(err.line or el.sourceline) if target is el else el.sourceline, visit=visit)
                if parent is not None and parent.getparent() is None and isinstance(tag, str):
                    # a child of the root: its tag joins the skeleton (a run of PASSAGES counts once)
                    if root_skel is None:
                        root_skel = etree.Element(parent.tag)
                    if not (tag == F.PASSAGES and len(root_skel) and root_skel[-1].tag == F.PASSAGES):
                        etree.SubElement(root_skel, tag)
                    if not sch.validate(root_skel):
                        return Problem("SCHEMA", f"non conforme au schéma RPU (structure du fichier) : "
                                       f"{sch.error_log[0].message}", line=el.sourceline)
                if tag == F.PATIENT:
                    el.clear()
                    while el.getprevious() is not None:   # keep the tree small, as in the first pass
                        del parent[0]
                elif tag == F.PASSAGES:
                    el.clear()
        except etree.XMLSyntaxError as exc:
            return self._locate(exc, it, idx, second_pass=True)
        return Problem(rule, f"non conforme au schéma RPU : {first_message}" if rule == "SCHEMA"
                       else f"XML mal formé : {first_message}")


# --- two cores for big files ----------------------------------------------------------------------------------
# Parsing (libxml2 + reading the items) holds the GIL, and so do the checks and the COPY rendering: a thread
# would not help. For a big file a forked child parses and streams the raw visits through a pipe while this
# process checks, renders and loads them — each side about half the work. The pipe is the back-pressure (the
# child waits when the loader is behind: memory stays flat), and its end closing stops the child if the
# loader dies.

PARALLEL_MIN_BYTES = 16 * 1024 * 1024
_BATCH = 500


def _parse_into(reader: RpuReader, out) -> None:
    """Child side: b"h" + pickled header (once, as soon as it is read), b"v" + marshalled [visit tuples] batches,
    then b"e" + pickled (warnings, n) or b"r" + pickled (problem, warnings). The visits go through `marshal`
    (plain ints, strings, dicts and lists; the same interpreter on both sides of the fork): about 2.4 × faster to
    write than pickle, and the child is the critical path of a big file's load."""
    import marshal
    import pickle

    batch: list[tuple] = []
    told_header = False

    def flush() -> None:
        nonlocal told_header
        if not told_header and reader.header is not None:
            out.send_bytes(b"h" + pickle.dumps(reader.header, pickle.HIGHEST_PROTOCOL))
            told_header = True
        if batch:
            out.send_bytes(b"v" + marshal.dumps(batch))
            batch.clear()

    try:
        for v in reader.visits():
            batch.append((v.idx, v.line, v.items, v.da, v.actes, v.extra, v.too_long))
            if len(batch) >= _BATCH:
                flush()
        flush()
        out.send_bytes(b"e" + pickle.dumps((reader.warnings, reader.visits_read), pickle.HIGHEST_PROTOCOL))
    except FileRejected as exc:
        flush()
        out.send_bytes(b"r" + pickle.dumps((exc.problem, reader.warnings), pickle.HIGHEST_PROTOCOL))
    except BrokenPipeError:
        pass   # the loader went away


def _child_main(reader: RpuReader, out) -> None:
    import gc
    import os

    gc.disable()
    try:
        _parse_into(reader, out)
    finally:
        out.close()
        os._exit(0)   # no atexit handlers, no flush of the parent's buffers: this process only parsed


class ParallelReader(RpuReader):
    """RpuReader whose parsing runs in a forked child (same results, same exceptions)."""

    def visits(self) -> Iterator[RawVisit]:
        import marshal
        import multiprocessing
        import pickle

        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child_main, args=(RpuReader(self.path, max_bytes=self.max_bytes,
                                                                with_schema=self.with_schema), send), daemon=True)
        child.start()
        send.close()
        try:
            while True:
                try:
                    message = receive.recv_bytes()
                except EOFError:
                    child.join(timeout=5)
                    raise ParserStopped(f"the parser of {self.path.name} stopped unexpectedly "
                                        f"(exit code {child.exitcode})") from None
                kind, body = message[:1], memoryview(message)[1:]
                if kind == b"v":
                    for idx, line, items, da, actes, extra, too_long in marshal.loads(body):
                        yield RawVisit(idx, line, items, da, actes, extra, too_long)
                elif kind == b"h":
                    self.header = pickle.loads(body)
                elif kind == b"e":
                    warnings, self.visits_read = pickle.loads(body)
                    self.warnings.extend(warnings)
                    return
                else:
                    problem, warnings = pickle.loads(body)
                    self.warnings.extend(warnings)
                    raise FileRejected(problem)
        finally:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()


def reader_for(path: Path | str, *, max_bytes: int | None = None) -> RpuReader:
    """The reader to use: a parallel one for big files on a machine with more than one core."""
    import os

    path = Path(path)
    threshold = PARALLEL_MIN_BYTES
    if os.environ.get("RPU_PARALLEL_MIN_MB"):   # ops knob (and benchmarks): the size from which to fork
        threshold = int(float(os.environ["RPU_PARALLEL_MIN_MB"]) * 1024 * 1024)
    try:
        big = path.stat().st_size >= threshold
    except OSError:
        big = False
    if big and (os.cpu_count() or 1) > 1:
        return ParallelReader(path, max_bytes=max_bytes)
    return RpuReader(path, max_bytes=max_bytes)
