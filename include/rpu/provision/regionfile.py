"""Provisioning input (FINESS, time zones, the establishments' CSV) and the region file: read, merged, written
with its comments and order kept."""
from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from rpu.config import SCHEMA, finess_is_valid, finess_with_key
from rpu.provision.errors import ProvisionError, fail

STATUSES = ("active", "shadow")
CSV_COLUMNS = ("finess", "name", "finess_ej", "status", "contact")
CODE_RE = re.compile(SCHEMA["properties"]["code"]["pattern"])
EMAIL_RE = re.compile(SCHEMA["properties"]["establishments"]["items"]["properties"]["contact"]["pattern"])


# --- input checks -----------------------------------------------------------------------------------------

def finess_problem(value: str, what: str = "FINESS") -> str | None:
    """Why `value` is not a valid FINESS number (None when it is)."""
    if finess_is_valid(value):
        return None
    if re.fullmatch(r"[0-9][0-9]{7}[0-9]", value or ""):
        return (f"{what} {value!r} has a wrong check key (9th digit, Luhn): with these 8 digits it would be "
                f"{finess_with_key(value[:8])!r}")
    return f"{what} {value!r} is not a FINESS number (9 characters: [0-9][0-9AB][0-9]{{7}}, the last a Luhn key)"


def timezone_problem(tz: str) -> str | None:
    try:
        ZoneInfo(tz)
        return None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(tz, sorted(available_timezones()), n=3, cutoff=0.6)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else " (IANA name expected, e.g. Europe/Paris, America/Cayenne)")
        return f"unknown time zone {tz!r}{hint}"


def establishment_problems(e: dict) -> list[str]:
    """Problems of one establishment's given fields (keys: those of CSV_COLUMNS that were given)."""
    out = []
    if not e.get("finess"):
        out.append("FINESS missing")
    else:
        p = finess_problem(e["finess"])
        if p:
            out.append(p)
    if not e.get("name"):
        out.append("name missing")
    if e.get("finess_ej"):
        p = finess_problem(e["finess_ej"], "FINESS EJ")
        if p:
            out.append(p)
        elif e["finess_ej"] == e.get("finess"):
            out.append(f"FINESS EJ {e['finess_ej']!r} equals the site's FINESS (ET): give the legal entity's number, "
                       "or none")
    if "status" in e and e["status"] not in STATUSES:
        out.append(f"status {e['status']!r}: expected active or shadow")
    if "contact" in e and not EMAIL_RE.match(e["contact"]):
        out.append(f"contact {e['contact']!r} is not an e-mail address")
    return out


def read_establishments_csv(path: Path) -> list[tuple[int, dict]]:
    """(line number, given fields) of each establishment of a `finess;name[;finess_ej[;status[;contact]]]` CSV
    with a header line (columns named as in CSV_COLUMNS, in any order). Raises ProvisionError naming every bad
    line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProvisionError(f"refused, nothing was changed:\n  {path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")    # a spreadsheet's "CSV (separator ;)" in Windows-1252
    problems: list[str] = []
    rows: list[tuple[int, dict]] = []
    header: list[str] | None = None
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    try:
        for cells in reader:
            line = reader.line_num
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if header is None:
                header = [c.lower() for c in cells]
                if len(header) == 1 and "," in header[0]:
                    problems.append(f"{path}:{line}: columns must be separated by ';' (not ',')")
                    break
                if finess_is_valid(cells[0]) or re.fullmatch(r"\d{9}", cells[0]):
                    problems.append(f"{path}:{line}: no header line: the first line must name the columns, "
                                    "e.g. finess;name;finess_ej;status;contact")
                    break
                unknown = [c for c in header if c not in CSV_COLUMNS]
                missing = [c for c in ("finess", "name") if c not in header]
                if unknown or missing or len(set(header)) != len(header):
                    problems.append(f"{path}:{line}: bad header {';'.join(cells)!r}: columns are "
                                    f"{';'.join(CSV_COLUMNS)} (finess and name required, each once)")
                    break
                continue
            if len(cells) > len(header):
                problems.append(f"{path}:{line}: {len(cells)} fields, the header has {len(header)} "
                                "(a ';' inside a name must be quoted: \"CH de A; site B\")")
                continue
            given = {k: v for k, v in zip(header, cells) if v}
            for p in establishment_problems(given):
                problems.append(f"{path}:{line}: {p}")
            f = given.get("finess")
            if f:
                if f in seen:
                    problems.append(f"{path}:{line}: FINESS {f} already on line {seen[f]}")
                seen.setdefault(f, line)
            rows.append((line, given))
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: malformed CSV: {exc}")
    if header is None and not problems:
        problems.append(f"{path}: empty file (expected a header line finess;name;... then one line per establishment)")
    fail(problems)
    return rows


# --- region files: read, merge, write (comments and order kept) ---------------------------------------------

def _yaml(text: str | None = None):
    """A round-trip ruamel YAML whose indentation reproduces `text` (the demo style for a new file)."""
    from ruamel.yaml import YAML

    def make(m, s, o):
        y = YAML()
        y.preserve_quotes = True
        y.width = 4096
        y.indent(mapping=m, sequence=s, offset=o)
        return y

    if text is None:
        return make(2, 4, 2)
    best, best_diff = None, None
    for m, s, o in ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 4, 0), (4, 2, 0), (2, 3, 1)):
        y = make(m, s, o)
        try:
            out = io.StringIO()
            y.dump(y.load(text), out)
        except Exception:  # noqa: BLE001 - a configuration that cannot represent this file
            continue
        diff = sum(1 for a, b in zip(out.getvalue().splitlines(), text.splitlines()) if a != b)
        if best_diff is None or diff < best_diff:
            best, best_diff = y, diff
        if diff == 0:
            break
    return best or make(2, 4, 2)


def _dump(y, doc) -> str:
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _plain(doc) -> object:
    """A ruamel document as plain Python data (what yaml.safe_load would give)."""
    return json.loads(json.dumps(doc, default=str))


def _quoted(value: str):
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return DoubleQuotedScalarString(value)


def _entry(given: dict):
    """A region file's establishment entry, in the demo's style (quoted strings, keys in a fixed order)."""
    from ruamel.yaml.comments import CommentedMap

    m = CommentedMap()
    for k in ("finess", "finess_ej", "name", "status", "contact"):
        if given.get(k):
            m[k] = given[k] if k == "status" else _quoted(given[k])
    return m


def _differences(existing: dict, given: dict) -> list[str]:
    return [f"{k}: {existing.get(k)!r} in the file, {v!r} given" for k, v in given.items()
            if k != "finess" and str(existing.get(k) if existing.get(k) is not None else "") != v]


def merge_establishments(doc, rows: list[tuple[str, dict]], *, update: bool, default_status: str,
                         hint: str = "use --update to change it, or edit the region file") -> tuple[list, list]:
    """Add each (where, given) establishment to the document's list, or update it (`update`) when it differs.
    Returns (added, updated) FINESS lists; raises ProvisionError on a conflict without `update`."""
    from ruamel.yaml.comments import CommentedSeq

    if doc.get("establishments") is None:
        doc["establishments"] = CommentedSeq()
    entries = doc["establishments"]
    by_finess = {str(e.get("finess")): e for e in entries}
    added, updated, conflicts = [], [], []
    for where, given in rows:
        current = by_finess.get(given["finess"])
        if current is None:
            entry = _entry({"status": default_status, **given})
            entries.append(entry)
            by_finess[given["finess"]] = entry
            added.append(given["finess"])
            continue
        diff = _differences(current, given)
        if not diff:
            continue
        if not update:
            conflicts.append(f"{where}: establishment {given['finess']} is already declared with other data "
                             f"({'; '.join(diff)}): {hint}")
            continue
        for k, v in given.items():
            if k != "finess":
                current[k] = v if k == "status" else _quoted(v)
        updated.append(given["finess"])
    fail(conflicts)
    return added, updated


def merge_alerts(doc, ars: list[str], ops: list[str], ars_none: bool) -> bool:
    """Add the given ARS and operations addresses (and ars_none) to the region file's `alerts`; True if it
    changed. Addresses already there are kept: removing one is an edit of the file."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not (ars or ops or ars_none):
        return False
    alerts = doc.setdefault("alerts", CommentedMap())
    changed = False
    for key, given in (("ars", ars), ("ops", ops)):
        for address in given:
            current = alerts.setdefault(key, CommentedSeq())
            if address not in current:
                current.append(address)
                changed = True
    if ars_none and not alerts.get("ars_none"):
        alerts["ars_none"] = True
        changed = True
    return changed


def new_region_doc(code: str, name: str, timezone: str, old_concentrator: bool):
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    doc = CommentedMap()
    doc["code"] = code
    doc["name"] = name
    doc["timezone"] = timezone
    if old_concentrator:
        doc["old_concentrator"] = True
    doc["establishments"] = CommentedSeq()
    doc.yaml_set_start_comment(
        f"Region {name} ({code}), written by `rpu region add`. Only what differs from the defaults\n"
        "(docs/intake.md#region-files). Add establishments with "
        f"`rpu establishment add --region {code} --finess ... --name ...`.")
    return doc


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader (the DAG processor) never sees it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _other_regions_declaring(directory: Path, code: str, finesses: set[str]) -> list[str]:
    """Warnings: FINESS numbers also declared in another region file."""
    import yaml

    out = []
    for p in sorted(Path(directory).glob("*.yaml")):
        if p.stem == code:
            continue
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            theirs = {str(e.get("finess")) for e in data.get("establishments") or ()}
        except Exception:  # noqa: BLE001 - a broken file of another region is not our business here
            continue
        for f in sorted(finesses & theirs):
            out.append(f"warning: establishment {f} is also declared in {p}")
    return out

