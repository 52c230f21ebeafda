"""Reception of the regions' cumulative ATIH files on the Syrius platform.

For each region, its drop directory on the Syrius SFTP server (where `<code>_send_atih` uploads) is listed;
each stable entry is judged on its own, with the intake's hostile-input rules (names as bytes, no symlink or
directory read through, the opened handle checked with fstat, a size limit) and read by the same streaming
parser (rpu.parse). A file is accepted when it is an anonymised cumulative file of that region: CODE_GEO and
AGE in every visit and no CP, COMMUNE or NAISSANCE (a file carrying one of them is refused whole, deleted from
the drop directory and never stored, and the region is told), a FINESS of the region, a period from 1 January,
an EXTRACT. It is then recorded in the national database in one transaction (file, region, FINESS, ORDRE,
period, RPU count, RPU per month of entry, sha256, received at); a newer file of the same FINESS_ordre and year
supersedes the older ones. The file then goes to archive/ (or rejected/) next to a receipt in ack/.

Order of operations, as in the intake: the record is committed before the receipt and the move, and a rerun
finds its record (same place, same sha256) and only completes the delivery.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg

from rpu import faults, files, intake, mail, outbox, store
from rpu import rpu_format as F
from rpu.config import PROJECT_DIR, Region
from rpu.national import schema
from rpu.national.settings import National
from rpu.parse import FileRejected, reader_for
from rpu.problems import RULES, Problem
from rpu.sftp import EntryChanged, EntryRefused

log = logging.getLogger(__name__)

IDENTIFYING = ("CP", "COMMUNE", "NAISSANCE")
ANONYMISED = ("CODE_GEO", "AGE")
COMPANION = ".manifest.json"            # travels with each ATIH file; moved along with it
SUBDIRS = ("archive", "rejected", "ack")
LOCK_UNIT_CLASS = 8152014               # advisory lock space of "a FINESS_ordre and year being recorded"

# rule → words of the receipt (French); the file rules of rpu.problems (XML, schema, size, name…) apply too
NATIONAL_RULES = {
    "NOT_ANONYMISED": "fichier non anonymisé (CP, COMMUNE ou NAISSANCE présents) : refusé en entier, supprimé "
                      "sans être conservé",
    "ATIH_LAYOUT": "passage sans CODE_GEO ou sans AGE : ce n'est pas un fichier ATIH anonymisé",
    "FINESS_NOT_IN_REGION": "FINESS d'un établissement qui n'est pas déclaré dans la région qui dépose",
    "FINESS_MISSING": RULES["FINESS_MISSING"][1],
    "EXTRACT_MISSING": RULES["EXTRACT_MISSING"][1],
    "PERIOD_NOT_CUMULATIVE": "période qui ne commence pas le 1er janvier ou ne finit pas la même année",
    "ORDRE_INVALID": "ORDRE illisible ou hors de 0–32767",
}
STATUS_WORDS = {"accepted": "ACCEPTÉ", "rejected": "REFUSÉ", "duplicate": "DÉJÀ REÇU (doublon)"}


@dataclass(frozen=True)
class Refusal:
    """A rule of the ATIH side (NATIONAL_RULES) broken by a file: a value like rpu.problems.Problem, whose
    registry holds the concentrator's rules only."""
    rule: str
    message: str
    line: int | None = None
    visit: int | None = None


def rule_label(rule: str) -> str:
    return NATIONAL_RULES.get(rule) or RULES.get(rule, ("", rule))[1]


# --- judging one local file ----------------------------------------------------------------------------------

def judge(path: Path, region: Region, *, max_bytes: int | None = None) -> dict:
    """Read a file once (streaming) and say what it is: {"problem": Problem | None, "finess", "ordre",
    "extract", "period_start", "period_end", "year", "rpu", "per_month": {month: visits}}. A file carrying an
    identifying item is judged at its first such visit, without reading further."""
    out = {"problem": None, "finess": None, "ordre": None, "extract": None, "period_start": None,
           "period_end": None, "year": None, "rpu": 0, "per_month": {}}
    reader = reader_for(path, max_bytes=max_bytes)
    per_day: dict[tuple[int, int], int] = {}
    last_entry: date | None = None
    n = 0
    try:
        for v in reader.visits():
            n += 1
            if any(k in v.items for k in IDENTIFYING):
                found = ", ".join(k for k in IDENTIFYING if k in v.items)
                out["problem"] = Refusal("NOT_ANONYMISED", f"le passage n°{v.idx} contient {found} : un fichier "
                                         "pour l'ATIH porte CODE_GEO et AGE à leur place, sans COMMUNE ; le fichier "
                                         "a été supprimé sans être conservé", line=v.line, visit=v.idx)
                return out
            if out["problem"] is None and not all(k in v.extra for k in ANONYMISED):
                out["problem"] = Refusal("ATIH_LAYOUT", f"le passage n°{v.idx} n'a pas CODE_GEO et AGE",
                                         line=v.line, visit=v.idx)
            entree = F.parse_datetime(v.items.get("ENTREE"))
            if entree is not None:
                key = (entree.year, entree.month)
                per_day[key] = per_day.get(key, 0) + 1
                last_entry = max(last_entry or entree.date(), entree.date())
    except FileRejected as exc:
        out["problem"] = exc.problem
        return out
    if out["problem"] is not None:
        return out
    h = reader.header
    finess = (h.finess or "").strip()
    if not finess:
        out["problem"] = Refusal("FINESS_MISSING", "FINESS absent de l'en-tête")
        return out
    out["finess"] = finess
    if not region.establishments_of(finess):
        out["problem"] = Refusal("FINESS_NOT_IN_REGION", f"le FINESS {finess} n'est pas un établissement de la "
                                 f"région {region.code} (fichier déposé dans son répertoire)")
        return out
    try:
        ordre = int(h.ordre or "0")
    except ValueError:
        ordre = -1
    if not 0 <= ordre <= F.MAX_ORDRE:
        out["problem"] = Refusal("ORDRE_INVALID", f"ORDRE {h.ordre[:20]!r} illisible ou hors de 0–{F.MAX_ORDRE}")
        return out
    out["ordre"] = ordre
    extract = F.parse_datetime(h.extract)
    if extract is None:
        out["problem"] = Refusal("EXTRACT_MISSING", "date d'extraction (EXTRACT) absente ou illisible")
        return out
    start = F.parse_date(h.datedebut)
    end = F.parse_date(h.datefin) or last_entry
    if start is None or (start.month, start.day) != (1, 1) or end is None or end.year != start.year or end < start:
        out["problem"] = Refusal("PERIOD_NOT_CUMULATIVE", f"période {h.datedebut[:10] or '…'} – "
                                 f"{h.datefin[:10] or '…'} : un fichier cumulatif va du 1er janvier à une date de "
                                 "la même année")
        return out
    out.update(extract=extract, period_start=start, period_end=end, year=start.year, rpu=n,
               per_month={m: c for (y, m), c in sorted(per_day.items()) if y == start.year})
    return out


# --- recording ----------------------------------------------------------------------------------------------

def sha256_of(path: Path) -> tuple[str, int]:
    return intake.sha256_of(path)


def record(conn, region: Region, name: str, sha256: str | None, size: int, judged: dict, *,
           remote_path: str | None = None) -> int:
    """Record one judged file in ONE transaction; returns its id. An accepted content already accepted for the
    region is a duplicate (changes nothing); an accepted file supersedes the older files of its FINESS_ordre and
    year (and is superseded at once if a newer one is already there: files may arrive out of order)."""
    p = judged["problem"]
    params = {"region": region.code, "file_name": name, "remote_path": remote_path, "sha256": sha256,
              "size_bytes": size, "status": "accepted" if p is None else "rejected",
              "rule": p.rule if p else None, "message": p.message if p else None,
              "finess": judged["finess"], "ordre": judged["ordre"], "extract": judged["extract"],
              "period_start": judged["period_start"], "period_end": judged["period_end"], "year": judged["year"],
              "rpu": judged["rpu"] if p is None else None, "duplicate_of": None}
    if p is not None and p.rule == "NOT_ANONYMISED":
        params.update(finess=None, ordre=None)   # nothing of its content is kept (the sha256 lets a rerun resume)
    with conn.transaction():
        if p is None:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (LOCK_UNIT_CLASS, f"{region.code}:{judged['finess']}:{judged['ordre']}:{judged['year']}"))
            dup = conn.execute(schema.query("find_duplicate"), {"region": region.code, "sha256": sha256}).fetchone()
            if dup:
                params.update(status="duplicate", duplicate_of=dup[0])
        fid = conn.execute(schema.query("insert_file"), params).fetchone()[0]
        if params["status"] == "accepted":
            for month, n in judged["per_month"].items():
                conn.execute("INSERT INTO national_file_month (file_id, month, rpu) VALUES (%s, %s, %s)",
                             (fid, month, n))
            conn.execute(schema.query("supersede"), {"region": region.code, "finess": judged["finess"],
                                                     "ordre": judged["ordre"], "year": judged["year"]})
    return fid


def receipt(conn, national: National, file_id: int) -> dict:
    """A received file as told to the region (JSON-able, no patient data)."""
    cur = conn.execute("SELECT * FROM national_file WHERE id = %s", (file_id,))
    r = schema.rows(cur)[0]
    months = dict(conn.execute("SELECT month, rpu FROM national_file_month WHERE file_id = %s ORDER BY month",
                               (file_id,)).fetchall())
    tz = national.tz
    return {"file_id": r["id"], "region": r["region"], "file": r["file_name"], "status": r["status"],
            "rule": r["rule"], "message": r["message"], "finess": (r["finess"] or "").strip() or None,
            "ordre": r["ordre"], "extract": r["extract"].isoformat(sep=" ") if r["extract"] else None,
            "period_start": r["period_start"].isoformat() if r["period_start"] else None,
            "period_end": r["period_end"].isoformat() if r["period_end"] else None, "rpu": r["rpu"],
            "rpu_per_month": {f"{r['year']}-{m:02d}": n for m, n in months.items()}, "sha256": r["sha256"],
            "duplicate_of": r["duplicate_of"], "superseded_by": r["superseded_by"],
            "received_at": r["received_at"].astimezone(tz).isoformat(timespec="seconds")}


def receipt_text(r: dict) -> str:
    """The receipt the region reads (French, plain text)."""
    lines = [f"Accusé de réception ATIH (plateforme Syrius) — région {r['region']}",
             f"Fichier        : {r['file']}",
             f"Reçu le        : {r['received_at']}",
             f"Résultat       : {STATUS_WORDS[r['status']]}"]
    if r["status"] == "rejected":
        lines.append(f"Motif          : [{r['rule']}] {rule_label(r['rule'])}")
        lines.append(f"                 {r['message']}")
        return "\n".join(lines) + "\n"
    lines += [f"Établissement  : {r['finess']} ordre {r['ordre']}",
              f"Extraction     : {r['extract']}",
              f"Période        : {r['period_start']} – {r['period_end']}",
              f"RPU            : {r['rpu']}"]
    if r["status"] == "duplicate":
        lines.append("                 contenu identique à un fichier déjà reçu : rien n'a été modifié")
    lines += ["RPU par mois d'entrée :"] + [f"  {m}  {n:8d}" for m, n in r["rpu_per_month"].items()]
    return "\n".join(lines) + "\n"


def receive_path(national: National, region: Region, db_url: str, path: Path, *, name: str | None = None,
                 remote_path: str | None = None) -> dict:
    """Judge and record one local file (what `rpu syrius receive` does, and the DAG for each download);
    returns its receipt. A database failure raises rpu.faults.DatabaseFault (ours: retried)."""
    path = Path(path)
    name = name or path.name
    sha256, size = sha256_of(path)
    try:
        with store.connection(db_url) as conn:
            if remote_path:
                found = conn.execute(schema.query("find_resumed"),
                                     {"remote_path": remote_path, "sha256": sha256}).fetchone()
                if found:
                    log.info("%s was already recorded (file #%s): completing its delivery", name, found[0])
                    return receipt(conn, national, found[0])
            judged = judge(path, region, max_bytes=national.max_file_bytes)
            fid = record(conn, region, name, sha256, size, judged, remote_path=remote_path)
            return receipt(conn, national, fid)
    except psycopg.Error as exc:
        raise faults.DatabaseFault(f"{name}: database error {faults.describe_db_error(exc, 'reception')}") from None


# --- the Syrius SFTP side -----------------------------------------------------------------------------------

def _candidate(national: National, raw: bytes) -> bool:
    name = raw.decode("utf-8", "surrogateescape")
    return not name.startswith(".") and not name.endswith(COMPANION) \
        and not name.lower().endswith(tuple(s.lower() for s in national.temp_suffixes))


def _item(national: National, code: str, e) -> dict:
    """What the DAG maps over for one entry (JSON), as rpu.intake's items: safe name, raw name when it differs,
    and the refusal the listing already tells."""
    name = intake.safe_name(e.raw)
    item = {"region": code, "path": posixpath.join(e.directory, name), "name": name, "size": e.size,
            "mtime": e.mtime, "kind": e.kind, "refuse": None}
    if name.encode() != e.raw:
        item["raw"] = e.raw.hex()
    problem = intake.name_problem(e.raw)
    if problem is None and e.kind != "file":
        problem = Problem("NOT_A_FILE", "l'entrée n'est pas un fichier ordinaire (lien symbolique, répertoire…)")
    if problem is None and e.size > national.max_file_bytes:
        problem = _too_large(national, e.size)
    if problem is not None:
        item["refuse"] = {"rule": problem.rule, "message": problem.message}
    return item


def _too_large(national: National, size: int) -> Problem:
    mib = 1024 * 1024
    return Problem("FILE_TOO_LARGE", f"fichier de {size / mib:.0f} Mo, au-delà de la limite de "
                   f"{national.max_file_bytes / mib:.0f} Mo : il n'a pas été téléchargé")


def list_new_files(national: National, regions: list[Region], remote, *,
                   stable_seconds: float | None = None) -> list[dict]:
    """Entries waiting in every region's drop directory whose size and mtime did not change between two looks
    (the subdirectories archive/, rejected/, ack/ and the manifests excepted)."""
    wait = national.stable_seconds if stable_seconds is None else stable_seconds

    def look() -> dict[bytes, tuple]:
        seen = {}
        for region in regions:
            drop = national.drop(region.code)
            try:
                entries = remote.list_entries(drop)
            except PermissionError:
                log.error("drop directory %s cannot be read (permission denied): left alone", drop)
                continue
            for e in entries:
                if e.kind == "dir" and e.raw.decode("utf-8", "replace") in SUBDIRS:
                    continue
                if _candidate(national, e.raw):
                    seen[e.path] = (region.code, e)
        return seen

    return [_item(national, code, e) for code, e in intake.stable_entries(look, wait)]


def _remote_path(item: dict) -> str | bytes:
    if "raw" not in item:
        return item["path"]
    return posixpath.dirname(item["path"]).encode() + b"/" + bytes.fromhex(item["raw"])


def _skipped(item: dict, reason: str) -> dict:
    return {"region": item["region"], "file": item["name"], "status": "skipped", "reason": reason}


def summary(r: dict) -> dict:
    """What the task log and XCom get: counts and rules, no content."""
    return {k: r.get(k) for k in ("region", "file", "status", "rule", "finess", "ordre", "period_end", "rpu")}


def receive_remote(national: National, region: Region, item: dict, remote, db_url: str, work, *,
                   send=None) -> dict:
    """Download one drop-directory entry, judge and record it, then receipt and move (or delete a non-anonymised
    file); an entry that cannot be read as a file is refused without reading it."""
    name, path = item["name"], _remote_path(item)
    with intake.entry_lock(db_url, item["path"]) as conn:   # the intake's per-entry lock, in the national DB
        if conn is None:
            return _skipped(item, "in progress elsewhere")
        try:
            remote.lstat(path)
        except FileNotFoundError:
            return _skipped(item, "gone")
        if item.get("refuse"):
            r = _refuse(conn, national, region, item, Problem(**item["refuse"]))
        else:
            local = work.file(name)
            try:
                try:
                    with files.open_private(local) as out:
                        remote.download_checked(path, out, limit=national.max_file_bytes)
                except EntryRefused as exc:
                    problem = (_too_large(national, exc.size or item["size"]) if exc.reason == "too_large"
                               else Problem("NOT_A_FILE", "l'entrée n'est pas un fichier ordinaire (lien "
                                            "symbolique, répertoire, ou remplacée pendant son ouverture)"))
                    r = _refuse(conn, national, region, item, problem)
                except EntryChanged:
                    return _skipped(item, "changed")
                else:
                    r = receive_path(national, region, db_url, local, name=name, remote_path=item["path"])
            finally:
                local.unlink(missing_ok=True)
        _deliver(national, region, remote, item, r, conn, send=send)
        log.info("%s · %s: %s%s", region.code, name, r["status"], f" [{r['rule']}]" if r["rule"] else
                 f" ({r['rpu']} RPU)")
        return summary(r)


def _refuse(conn, national: National, region: Region, item: dict, problem: Problem) -> dict:
    judged = {"problem": problem, "finess": None, "ordre": None, "extract": None, "period_start": None,
              "period_end": None, "year": None, "rpu": None, "per_month": {}}
    try:
        found = conn.execute(schema.query("find_refusal"), {"remote_path": item["path"], "size": item["size"]}
                             ).fetchone()
        fid = found[0] if found else record(conn, region, item["name"], None, item["size"], judged,
                                            remote_path=item["path"])
        return receipt(conn, national, fid)
    except psycopg.Error as exc:
        raise faults.DatabaseFault(f"{item['name']}: database error "
                                   f"{faults.describe_db_error(exc, 'refusal')}") from None


def _deliver(national: National, region: Region, remote, item: dict, r: dict, conn, *, send=None) -> None:
    """After the commit only: receipt, then the move (a non-anonymised file is deleted, its manifest too), then
    the record that the delivery is done; a refused file is mailed to the region (once, through the outbox)."""
    code, name = region.code, item["name"]
    ack = national.drop(code, "ack")
    remote.put_bytes(posixpath.join(ack, f"{name}.ack.txt"), receipt_text(r).encode("utf-8"))
    remote.put_bytes(posixpath.join(ack, f"{name}.ack.json"), json.dumps(r, ensure_ascii=False, indent=1).encode())
    source = _remote_path(item)
    companion = (source + COMPANION.encode()) if isinstance(source, bytes) else source + COMPANION
    if r["rule"] == "NOT_ANONYMISED":
        remote.client.remove(source)
        if remote.exists(companion):
            remote.client.remove(companion)
        moved_to = "(supprimé)"
    else:
        dest = national.drop(code, "rejected" if r["status"] == "rejected" else "archive")
        moved_to = remote.move_into(source, dest, name)
        if isinstance(companion, str) and remote.exists(companion):
            remote.move_into(companion, dest, posixpath.basename(moved_to) + COMPANION)
    try:
        conn.execute("UPDATE national_file SET delivered_at = now() WHERE id = %s", (r["file_id"],))
    except psycopg.Error as exc:
        log.error("%s · %s delivered to %s, but not recorded as such: %s", code, name, moved_to,
                  faults.describe_db_error(exc, "delivery"))
    if r["status"] == "rejected":
        tell_refused(conn, national, region, r, send=send)
    log.info("%s · %s → %s", code, name, moved_to)


def tell_refused(conn, national: National, region: Region, r: dict, *, send=None) -> None:
    """Mail the region (its operations, else its ARS) and ATIH operations that a file was refused: queued once
    per file in the national outbox, then flushed (a mail server down keeps it for the next run)."""
    to = list(dict.fromkeys(list(region.ops_emails or region.ars_emails) + list(national.ops_emails)))
    if not to:
        log.warning("%s · %s refused, and no address to tell (region alerts.ops / alerts.ars)", region.code, r["file"])
        return
    subject, text, html = mail.render("atih_file_refused", region=region, r=r, rule_label=rule_label(r["rule"]))
    me = national.as_region()
    with conn.transaction():
        outbox.queue(conn, me, "atih_file_refused", to, subject, text, html, key=f"refused:{r['file_id']}")
    try:
        outbox.flush(conn, me, send=send)
    except outbox.MailNotDelivered as exc:
        log.warning("refusal of %s kept in the outbox: %s", r["file"], exc)


def receive_items(national: National, regions: dict[str, Region], items: list[dict], remote, db_url: str,
                  work_dir: Path, *, send=None) -> list[dict]:
    """Receive the entries of one run, each on its own. A fault of ours on one (database, SFTP, disk) does not
    stop the others; the task then fails at the end naming them, and Airflow retries it (a file's content never
    fails it)."""
    results, failed = [], []
    with files.WorkArea(work_dir) as work:
        for item in items:
            who = f"{item['region']} · {item['name']}"
            try:
                results.append(receive_remote(national, regions[item["region"]], item, remote, db_url, work,
                                              send=send))
            except Exception as exc:   # noqa: BLE001 - database, SFTP, disk: ours, retried
                failed.append(who)
                db = faults.db_error(exc)
                if db is not None:
                    log.error("%s not processed (retried): %s", who, faults.describe_db_error(db))
                else:
                    log.error("%s not processed (retried): %s", who, faults.code_location(exc))
    if failed:
        raise faults.IntakeFault(f"{len(failed)} of {len(items)} files not processed, left in their drop "
                                 f"directory for the retry: {', '.join(failed)}")
    return results


def work_root() -> Path:
    """Where downloads wait for their check (removed after each)."""
    return Path(os.environ.get("RPU_DATA_DIR", PROJECT_DIR / "var")) / "work" / "national"
