"""Intake of establishments' files: find, download, archive, check+load, receipt, move.

The same functions serve the `<region>_intake` DAG and the `rpu ingest` command. Order of operations is what
makes it safe: the local archive copy is written before the load; the inbox file is moved only after the
load's transaction has committed; a rerun after any interruption finds the same content from the same place
and completes (receipt and move) without loading twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
import unicodedata
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import psycopg

from rpu import config, faults, files, loader, storage, store
from rpu.config import Region
from rpu.problems import RULES, Problem
from rpu.quality import gate, results
from rpu.sftp import EntryChanged, EntryRefused

log = logging.getLogger(__name__)

STATUS_WORDS = {"accepted": "ACCEPTÉ", "rejected": "REJETÉ", "duplicate": "DÉJÀ REÇU (doublon)"}


def sha256_of(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def archive_copy(region: Region, path: Path, owner: str, name: str, sha256: str):
    """Keep the raw file in the shared storage: <archive_dir>/<FINESS>/<YYYY>/<MM>/<name> (a different content
    gets its hash); locally 0600 in 0700 directories (rpu.storage). Returns its location."""
    now = datetime.now(region.tz)
    directory = storage.join(region.archive_dir, owner, f"{now:%Y}", f"{now:%m}")
    target = storage.join(directory, name)
    if storage.exists(target) and storage.sha256(target) != sha256:
        target = storage.join(directory, f"{name}.{sha256[:12]}")
    if not storage.exists(target):
        storage.put_file(path, target)
    return target


def ingest_path(region: Region, db_url: str, path: Path, *, sender: str | None = None, name: str | None = None,
                remote_path: str | None = None, progress=None, quality_gate: bool = True) -> dict:
    """Archive, check and load one local file, then (`quality_gate`, the default) run the quality gate on its
    batch (accepted files, in a transaction of its own after the load's); returns the receipt data
    (`receipt_data`). `quality_gate=False` leaves the gate out: the batch waits, gate pending and not exported,
    for the run's one gate (`gate_run`: the intake DAG's `gate` task, `rpu ingest` after all its files).

    A content the database refuses is rejected (DATABASE_REFUSED), a defect of the checks on it too
    (CHECK_FAILED): a file is never retried for its content. Any other database failure raises
    rpu.faults.DatabaseFault, told by SQLSTATE and place only (PostgreSQL quotes values in its messages)."""
    path = Path(path)
    name = name or path.name
    sha256, size = sha256_of(path)
    archived = archive_copy(region, path, sender or "manual", name, sha256)
    step = "connection"
    try:
        with store.connection(db_url) as conn:
            step = "load"
            file_id, gated = _load(conn, region, path, name=name, sender=sender, sha256=sha256, size=size,
                                   archived=archived, remote_path=remote_path, progress=progress)
            if quality_gate:
                step = "quality gate"
                # also after a rerun: a crash between the load's commit and the gate's leaves the gate to do;
                # a duplicate brings the gate of its original if that one is still waiting
                if gate.gate_needed(conn, gated):
                    gate.gate_pending(conn, region, db_url, only=[gated])
            step = "receipt"
            return receipt_data(conn, region, file_id)
    except psycopg.Error as exc:
        raise faults.DatabaseFault(f"{name}: database error {faults.describe_db_error(exc, step)}") from None


def _load(conn, region: Region, path: Path, *, name, sender, sha256, size, archived, remote_path,
          progress) -> tuple[int, int]:
    """(id of the file's record, id of the batch whose gate is due): the load, a resumed delivery, or a
    rejection for a content the database or the checks could not take."""
    if remote_path:
        resumed = conn.execute(store.query("find_resumed"), dict(sha256=sha256, remote_path=remote_path)).fetchone()
        if resumed:
            log.info("%s from %s was already processed (file #%s): completing its delivery", name, sender,
                     resumed[0])
            return resumed[0], resumed[0]
    common = dict(name=name, sha256=sha256, size=size, sender=sender, archive_path=archived,
                  remote_path=remote_path)
    try:
        outcome = loader.load_file(conn, path, region=region, progress=progress, **common)
    except faults.ContentRefused as exc:
        fid = loader.record_rejection(conn, exc.problem, **common)
        return fid, fid
    except psycopg.Error as exc:
        if not faults.is_content_fault(exc):
            raise
        what = faults.describe_db_error(exc, "load")
        log.error("%s from %s: %s — file rejected (DATABASE_REFUSED)", name, sender, what)
        row, column = faults.copy_position(exc)
        fid = loader.record_rejection(conn, Problem(
            "DATABASE_REFUSED", f"la base régionale refuse une valeur de ce fichier (SQLSTATE {exc.sqlstate}"
            + (f", colonne {column}" if column else "") + ") : corrigez-la et renvoyez le fichier",
            visit=row), **common)
        return fid, fid
    return outcome.file_id, outcome.duplicate_of or outcome.file_id


def receipt_data(conn, region: Region, file_id: int) -> dict:
    """A received file as told to its sender: outcome, counts, days, reasons — no patient data."""
    cur = conn.execute(store.query("received_file_by_id"), {"file_id": file_id})
    row = dict(zip([c.name for c in cur.description], cur.fetchone()))
    est = region.establishment(row["etab"] or row["sender"] or "")
    out = {
        "region": region.code,
        "file_id": row["id"],
        "file": row["file_name"],
        "sha256": row["sha256"],
        "sender": row["sender"],
        "finess": row["finess"],
        "etab": row["etab"],
        "establishment": est.name if est else None,
        "status": "duplicate" if row["is_duplicate"] else row["status"],
        "original_status": row["status"] if row["is_duplicate"] else None,
        "duplicate_of": row["duplicate_of"],
        "original_file": row["original_name"],
        "ordre": row["ordre"],
        "extract": row["extract"].isoformat(sep=" ") if row["extract"] else None,
        "period_start": row["period_start"].isoformat() if row["period_start"] else None,
        "period_end": row["period_end"].isoformat() if row["period_end"] else None,
        "visits": row["visits_total"],
        "visits_loaded": row["visits_loaded"],
        "visits_rejected": row["visits_rejected"],
        "visits_flagged": row["visits_flagged"],
        "days_applied": [d.isoformat() for d in row["days_applied"]],
        "days_kept_newer": [d.isoformat() for d in row["days_kept_newer"]],
        "per_day": row["per_day"],
        "errors": row["errors"],
        "warnings": row["warnings"],
        "flags": row["flags"],
        "received_at": row["received_at"].astimezone(region.tz).isoformat(timespec="seconds"),
        "processed_at": row["processed_at"].astimezone(region.tz).isoformat(timespec="seconds"),
        "quality": None,
    }
    if not row["is_duplicate"] and row["status"] == "accepted":
        out["quality"] = results.file_quality(conn, file_id, region.tz)
    return out


def gate_run(region: Region, db_url: str, remote=None) -> list[dict]:
    """The one quality gate of an intake run (the DAG's `gate` task, `rpu ingest` after all its files): every
    batch still waiting for its gate, this run's and an earlier run's (rpu.quality.gate.gate_pending). With
    `remote` (the SFTP inbox server), the receipt in ack/ of each file judged that came through it is written again
    with the gate's verdict, as soon as that file's results are stored. Returns one summary per file judged. A
    database failure raises rpu.faults.DatabaseFault (a retry finds the files not yet judged still pending); a
    file's content never fails the gate."""
    out = []
    try:
        with store.connection(db_url) as conn:
            def told(judged: dict) -> None:
                r = receipt_data(conn, region, judged["file_id"])
                out.append(summary(r))
                if remote is None or not r["sender"]:
                    return
                if not store.fetch_one(conn, "received_file_remote", {"file_id": judged["file_id"]})["remote"]:
                    return
                try:
                    _write_receipt(region, remote, r["sender"], r["file"], r)
                except Exception as exc:  # noqa: BLE001 - the verdict is stored; the first receipt stays
                    log.error("%s · %s: receipt with the quality verdict not written (%s): its first receipt "
                              "stays", r["sender"], r["file"], type(exc).__name__)

            gate.gate_pending(conn, region, db_url, on_judged=told)
            return out
    except psycopg.Error as exc:
        raise faults.DatabaseFault(f"quality gate: database error {faults.describe_db_error(exc, 'quality gate')}"
                                   ) from None


def _fr_date(iso: str | None) -> str:
    return f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}" if iso else "…"


def receipt_text(r: dict) -> str:
    """The receipt a hospital's IT team reads (French, plain text)."""
    lines = [
        f"Accusé de réception RPU — concentrateur régional {r['region']}",
        f"Fichier        : {r['file']}",
        f"Établissement  : {r['etab'] or r['sender'] or '?'}{' – ' + r['establishment'] if r['establishment'] else ''}",
        f"Traité le      : {r['processed_at']}",
        f"Résultat       : {STATUS_WORDS[r['status']]}",
    ]
    if r["status"] == "duplicate":
        lines.append(f"                 contenu identique au fichier déjà reçu {r['original_file']!r} "
                     f"({STATUS_WORDS.get(r['original_status'], r['original_status'])}) : rien n'a été modifié")
        return "\n".join(lines) + "\n"
    if r["extract"]:
        lines.append(f"Extraction     : {r['extract']}")
    lines.append(f"Période        : {_fr_date(r['period_start'])} – {_fr_date(r['period_end'])}")
    lines.append(f"Passages       : {r['visits']} lus, {r['visits_loaded']} enregistrés, {r['visits_rejected']} rejetés, "
                 f"{r['visits_flagged']} avec anomalie(s) de qualité")
    if r["status"] == "rejected":
        lines.append("Le fichier entier est refusé : aucun passage n'a été enregistré. Corrigez et renvoyez-le.")
    if r["per_day"]:
        lines.append("Passages acceptés dans le fichier, par jour d'entrée :")
        lines += [f"  {_fr_date(d)}  {n:6d}" for d, n in sorted(r["per_day"].items())]
    if r["days_kept_newer"]:
        lines.append("Jours non remplacés (une extraction plus récente est déjà enregistrée) : "
                     + ", ".join(_fr_date(d) for d in r["days_kept_newer"]))
    if r["errors"]:
        lines.append("Erreurs :")
        for e in r["errors"]:
            where = ", ".join(x for x in (f"ligne {e['line']}" if e.get("line") else "",
                                          f"passage n°{e['visit']}" if e.get("visit") else "") if x)
            lines.append(f"  [{e['rule']}] {where + ' : ' if where else ''}{e['message']}")
        if r["visits_rejected"] > sum(1 for e in r["errors"] if e.get("visit")):
            lines.append(f"  … {r['visits_rejected']} passages rejetés au total (liste complète conservée par l'ORU)")
    if r["flags"]:
        lines.append("Anomalies de qualité (passages enregistrés quand même) :")
        lines += [f"  [{rule}] {RULES.get(rule, ('', rule))[1]} : {n} passage(s)" for rule, n in r["flags"].items()]
    if r["warnings"]:
        lines.append("Avertissements :")
        lines += [f"  [{w['rule']}] {w['message']}" for w in r["warnings"]]
    if r.get("quality"):
        lines += _quality_lines(r["quality"])
    elif r["status"] == "accepted":
        lines.append("Contrôle qualité FEDORU : en cours (cet accusé sera remplacé par un accusé complété de son "
                     "résultat).")
    return "\n".join(lines) + "\n"


def _fr_number(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}".replace(",", " ").replace(".", ",")


def _quality_lines(q: dict) -> list[str]:
    """The quality gate's verdict in the receipt (rpu.quality.file_quality): failed expectations in plain words,
    and whether the batch is held. FEDORU: none of this rejects the file."""
    suites = ", ".join(f"{s['suite']} v{s['version']}" for s in q["suites"])
    head = f"Contrôle qualité FEDORU (suites {suites}) : "
    if q["status"] == "passed":
        lines = [head + "tous les indicateurs sont atteints."]
    elif q["status"] == "skipped":
        lines = [head + "sans objet (aucun passage enregistré)."]
    elif q["status"] == "error" and not q["failed"]:
        lines = [head + "non effectué (incident technique à l'ORU, aucune action de votre part)."]
    else:
        lines = [head + f"{len(q['failed'])} indicateur(s) non atteint(s) (passages enregistrés quand même) :"]
        for f in q["failed"]:
            if f["unexpected_count"] is not None:
                pct = f" ({_fr_number(f['unexpected_percent'])} %)" if f["unexpected_percent"] is not None else ""
                what = f"{f['unexpected_count']} {f['unit']}{pct}".rstrip()
            elif f["observed_value"] is not None:
                what = f"valeur observée {f['observed_value']}"
            else:
                what = "non évalué"
            lines.append(f"  [{f['name']}] {f['description']} : {what}{' — BLOQUANT' if f['blocking'] else ''}")
        if q["status"] == "error":
            lines.append("  (une partie du contrôle n'a pu être effectuée : incident technique à l'ORU)")
    held = q["quarantine"]
    if q["quarantined"]:
        lines.append(f"LOT EN QUARANTAINE ({', '.join(held['expectations'])}) : ses passages sont conservés mais ne "
                     "seront transmis (Santé publique France, ATIH, ARS) qu'après levée par l'ORU. Corrigez et "
                     "renvoyez le fichier, ou contactez l'ORU.")
    elif held:
        lines.append(f"Quarantaine levée le {held['released_at']} par {held['released_by']} : le lot est transmis.")
    return lines


def summary(r: dict) -> dict:
    """What the DAG logs and returns through XCom: counts and rules only."""
    return {k: r[k] for k in ("file", "sender", "etab", "status", "visits", "visits_loaded", "visits_rejected",
                              "visits_flagged", "period_start", "period_end")} | {
        "errors": [f"{e['rule']}@{e.get('line')}" for e in r["errors"][:20]],
        "quality": (r.get("quality") or {}).get("status"),
        "quarantined": bool((r.get("quality") or {}).get("quarantined"))}


# --- remote (SFTP) side ------------------------------------------------------------------------------------
# Every entry of an inbox is judged on its own. An entry refused before its content is read (a name that is
# not UTF-8 or holds control characters, a name too long for our storage and the receipt's, a symlink, a
# directory, a size over intake.max_file_mb) is recorded as a rejected file, told in a receipt under a safe
# name and moved to rejected/, like any rejected file: it never stops the others.

# Longest name we take: the work copy, the archive's temporary copy, the receipt's temporary upload and a
# renamed duplicate in archive/ add up to 22 bytes to it, under the 255 bytes of a file name.
MAX_NAME_BYTES = 200
LOCK_FILE_CLASS = 8152006   # advisory lock space (two-key form) of "an inbox entry being processed"
_REFUSAL_WORDS = {
    "link": "l'entrée est un lien symbolique, pas un fichier : déposez le fichier lui-même",
    "dir": "l'entrée est un répertoire, pas un fichier : déposez les fichiers directement dans inbox/",
    "other": "l'entrée n'est pas un fichier ordinaire",
    "swapped": "l'entrée a été remplacée (lien symbolique ou autre fichier) pendant son ouverture : elle n'a pas "
               "été lue",
}


def _bad_char(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")


def safe_name(raw: bytes) -> str:
    """The name under which an entry is told (logs, receipts, rejected/): bytes that are not UTF-8 and control
    or invisible characters as %XX, cut to MAX_NAME_BYTES with a hash of the whole name."""
    text = raw.decode("utf-8", "surrogateescape")
    out = "".join(f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF
                  else "".join(f"%{b:02X}" for b in c.encode()) if _bad_char(c) else c for c in text)
    if len(out.encode()) > MAX_NAME_BYTES:
        head = out.encode()[:MAX_NAME_BYTES - 12].decode("utf-8", "ignore")
        out = f"{head}~{hashlib.sha256(raw).hexdigest()[:10]}"
    return out


def name_problem(raw: bytes) -> Problem | None:
    """NAME_INVALID / NAME_TOO_LONG for a name we cannot take as it is, else None."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Problem("NAME_INVALID", "nom de fichier qui n'est pas de l'UTF-8 valide (caractères accentués "
                       "d'un autre encodage ?) : renommez-le en caractères ASCII, par exemple "
                       "RPU_<FINESS>_<AAAAMMJJhhmmss>.xml")
    if any(_bad_char(c) for c in name):
        return Problem("NAME_INVALID", "nom de fichier contenant des caractères de contrôle ou invisibles : "
                       "renommez-le, par exemple RPU_<FINESS>_<AAAAMMJJhhmmss>.xml")
    if len(raw) > MAX_NAME_BYTES:
        return Problem("NAME_TOO_LONG", f"nom de fichier de {len(raw)} octets, au-delà de {MAX_NAME_BYTES} : "
                       "renommez-le, par exemple RPU_<FINESS>_<AAAAMMJJhhmmss>.xml")
    return None


def _too_large(region: Region, size: int) -> Problem:
    mib = 1024 * 1024
    return Problem("FILE_TOO_LARGE", f"fichier de {size / mib:.0f} Mo, au-delà de la limite de "
                   f"{region.intake.max_file_bytes / mib:.0f} Mo : il n'a pas été téléchargé")


def is_candidate(region: Region, name: str | bytes) -> bool:
    """Skip hidden files and names that say they are still being written."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    return not name.startswith(".") and not name.lower().endswith(tuple(s.lower() for s in region.intake.temp_suffixes))


def _item(region: Region, finess: str, entry) -> dict:
    """What the DAG maps over for one entry (JSON for XCom): its safe name and path, its raw name when that
    differs (hex), and its refusal when the listing already tells it."""
    name = safe_name(entry.raw)
    item = {"finess": finess, "path": posixpath.join(entry.directory, name), "name": name, "size": entry.size,
            "mtime": entry.mtime, "kind": entry.kind, "refuse": None}
    if name.encode() != entry.raw:
        item["raw"] = entry.raw.hex()
    problem = name_problem(entry.raw)
    if problem is None and entry.kind != "file":
        problem = Problem("NOT_A_FILE", _REFUSAL_WORDS[entry.kind])
    if problem is None and entry.size > region.intake.max_file_bytes:
        problem = _too_large(region, entry.size)
    if problem is not None:
        item["refuse"] = {"rule": problem.rule, "message": problem.message}
    return item


def _remote_path(item: dict) -> str | bytes:
    """The entry's real path on the server (bytes when its name is not the safe one)."""
    if "raw" not in item:
        return item["path"]
    return posixpath.dirname(item["path"]).encode() + b"/" + bytes.fromhex(item["raw"])


def list_new_files(region: Region, remote, *, stable_seconds: float | None = None) -> list[dict]:
    """Entries waiting in every establishment's inbox whose size and mtime did not change between two looks:
    files to ingest, and entries to refuse (`refuse` set)."""
    wait = region.intake.stable_seconds if stable_seconds is None else stable_seconds

    def look() -> dict[bytes, tuple]:
        seen = {}
        for est in region.establishments:
            inbox = region.remote_dir("inbox", est.finess)
            try:
                entries = remote.list_entries(inbox)
            except PermissionError:
                log.error("inbox %s cannot be read (permission denied): left alone, the others go on", inbox)
                continue
            for e in entries:
                if is_candidate(region, e.raw):
                    seen[e.path] = (est.finess, e)
        return seen

    return [_item(region, finess, e) for finess, e in stable_entries(look, wait)]


def stable_entries(look, wait: float) -> list[tuple[str, object]]:
    """The entries `look()` ({path: (owner, entry)}) lists twice, `wait` seconds apart, with the same size and
    mtime, as (owner, entry); the others are still being written and are left for the next run."""
    first = look()
    if first and wait:
        time.sleep(wait)
    second = look() if wait else first
    stable = []
    for path, (owner, e) in second.items():
        before = first.get(path)
        if before is None or (before[1].size, before[1].mtime) != (e.size, e.mtime):
            log.info("%s · %s is still being written: left for the next run", owner, safe_name(e.raw))
            continue
        stable.append((owner, e))
    return stable


def chunks(region: Region, items: list[dict], max_map_length: int = 1024) -> list[dict]:
    """The mapped units of an intake run: `region.intake.chunk_files` files each, more when the backlog is such that
    Airflow's max_map_length would be passed (every file waiting is taken in one run)."""
    size = max(region.intake.chunk_files, -(-len(items) // max_map_length))
    return [{"label": chunk_label(part), "files": part} for part in
            (items[i:i + size] for i in range(0, len(items), size))]


def chunk_label(items: list[dict], limit: int = 250) -> str:
    """The map index of a chunk: every `FINESS · name`, within Airflow's 250 characters (else the first ones
    and how many more; the task log names them all)."""
    names = [f"{i['finess']} · {i['name']}" for i in items]
    label = ", ".join(names)
    if len(label) <= limit:
        return label
    for k in range(len(names) - 1, 0, -1):
        label = ", ".join(names[:k]) + f" … (+{len(names) - k})"
        if len(label) <= limit:
            return label
    return names[0][:limit - 12] + f"… (+{len(names) - 1})"


def ingest_items(region: Region, items: list[dict], remote, db_url: str, work_dir: Path | None = None, *,
                 quality_gate: bool = False) -> list[dict]:
    """Ingest the files of one chunk, each on its own (its own transaction, receipt and failure). A fault of
    ours on one file (database or SFTP down, disk full) does not stop the others; the chunk then fails at the
    end, naming the files left in their inbox, and Airflow retries it (the files done are no longer there).
    The quality gate is left to the run's one gate (`gate_run`) unless `quality_gate`."""
    results, failed = [], []
    with files.WorkArea(Path(work_dir) if work_dir else work_root(region)) as work:
        for item in items:
            who = f"{item['finess']} · {item['name']}"
            log.info("%s: ingest", who)
            try:
                results.append(ingest_remote_file(region, item, remote, db_url, work, quality_gate=quality_gate))
            except faults.DatabaseFault as exc:
                failed.append(who)
                log.error("%s not processed (retried): %s", who, exc)
            except Exception as exc:   # noqa: BLE001 - SFTP, disk, a killed parser: ours, retried
                failed.append(who)
                db = faults.db_error(exc)
                if db is not None:
                    log.error("%s not processed (retried): %s", who, faults.describe_db_error(db))
                else:
                    log.exception("%s not processed (retried)", who)
    if failed:
        raise faults.IntakeFault(f"{len(failed)} of {len(items)} files not processed, left in their inbox for "
                                 f"the retry: {', '.join(failed)}")
    return results


def work_root(region: Region) -> Path:
    """Where the region's downloads wait for their load: this worker's local disk (`RPU_DATA_DIR`), never the
    shared storage (a later try downloads again)."""
    return config.data_dir() / "work" / region.code


def tidy(region: Region) -> dict:
    """Local housekeeping of an intake run: leftovers of killed tasks in work/, archive past its retention."""
    return {"work_leftovers_removed": files.clean_work(work_root(region)),
            "archived_files_deleted": storage.apply_retention(region.archive_dir, region.archive_retention_days)}


@contextmanager
def entry_lock(db_url: str, path: str):
    """Hold the lock of one inbox entry while it is processed: a second ingest of the same entry (a rerun
    racing a slow task) leaves it to the first, so it is loaded once and gets one receipt. The lock lives
    with its database session: a killed task frees it."""
    try:
        conn = store.connect(db_url)
    except psycopg.Error as exc:
        raise faults.DatabaseFault(f"database error {faults.describe_db_error(exc, 'entry lock')}") from None
    try:
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                               (LOCK_FILE_CLASS, path)).fetchone()[0]
        except psycopg.Error as exc:
            raise faults.DatabaseFault(f"database error {faults.describe_db_error(exc, 'entry lock')}") from None
        yield conn if got else None
    finally:
        conn.close()


def _skipped(item: dict, reason: str) -> dict:
    return {"file": item["name"], "sender": item["finess"], "status": "skipped", "reason": reason}


def ingest_remote_file(region: Region, item: dict, remote, db_url: str, work=None, *,
                       quality_gate: bool = False) -> dict:
    """Download one inbox file, ingest it, then write the receipt in ack/ and move the file out of inbox/;
    or refuse the entry (see `refuse_entry`). Returns the summary told to the task log and XCom. The batch waits
    for the run's one gate (`gate_run`, which writes the receipt again with its verdict) unless `quality_gate`."""
    finess, name, path = item["finess"], item["name"], _remote_path(item)
    with entry_lock(db_url, item["path"]) as conn:
        if conn is None:
            log.info("%s · %s is being processed by another task: left to it", finess, name)
            return _skipped(item, "in progress elsewhere")
        try:
            remote.lstat(path)
        except FileNotFoundError:
            log.info("%s · %s is no longer in the inbox (processed meanwhile)", finess, name)
            return _skipped(item, "gone")
        if item.get("refuse"):
            return refuse_entry(region, item, remote, conn, Problem(**item["refuse"]))
        with files.WorkArea(work_root(region)) if work is None else nullcontext(work) as area:
            local = area.file(name)
            try:
                try:
                    with files.open_private(local) as out:
                        remote.download_checked(path, out, limit=region.intake.max_file_bytes)
                except EntryRefused as exc:
                    problem = (_too_large(region, exc.size or item["size"]) if exc.reason == "too_large"
                               else Problem("NOT_A_FILE", _REFUSAL_WORDS[exc.reason]))
                    return refuse_entry(region, item, remote, conn, problem)
                except EntryChanged:
                    log.info("%s · %s changed while being read: left for the next run", finess, name)
                    return _skipped(item, "changed")
                r = ingest_path(region, db_url, local, sender=finess, name=name, remote_path=item["path"],
                                quality_gate=quality_gate)
            finally:
                local.unlink(missing_ok=True)
        _deliver(region, remote, item, r, conn)
        log.info("%s · %s: %s (%s visits loaded, %s rejected)", finess, name, r["status"], r["visits_loaded"],
                 r["visits_rejected"])
        return summary(r)


def refuse_entry(region: Region, item: dict, remote, conn, problem: Problem) -> dict:
    """Refuse an inbox entry without reading it: recorded as a rejected file (once, even across reruns),
    receipt under its safe name, moved to rejected/. `conn`: the session holding the entry's lock."""
    try:
        found = conn.execute(store.query("find_refusal"),
                             {"remote_path": item["path"], "size": item["size"]}).fetchone()
        fid = found[0] if found else loader.record_rejection(
            conn, problem, name=item["name"], sha256=None, size=item["size"], sender=item["finess"],
            remote_path=item["path"])
        r = receipt_data(conn, region, fid)
    except psycopg.Error as exc:
        raise faults.DatabaseFault(f"{item['name']}: database error "
                                   f"{faults.describe_db_error(exc, 'refusal')}") from None
    _deliver(region, remote, item, r, conn)
    log.warning("%s · %s refused: [%s] %s", item["finess"], item["name"], problem.rule, RULES[problem.rule][1])
    return summary(r)


def _deliver(region: Region, remote, item: dict, r: dict, conn) -> None:
    """After the commit only: receipt first, then the move (a rerun redoes both, never the load), then the
    record that the delivery is done."""
    finess, name = item["finess"], item["name"]
    _write_receipt(region, remote, finess, name, r)
    dest = region.remote_dir("rejected" if r["status"] == "rejected" else "archive", finess)
    moved_to = remote.move_into(_remote_path(item), dest, name)
    try:
        conn.execute(store.query("mark_delivered"), {"file_id": r["file_id"]})
    except psycopg.Error as exc:
        # the file is out of the inbox: nothing will look for its delivery again; say so and go on
        log.error("%s · %s delivered to %s, but not recorded as such: %s", finess, name, moved_to,
                  faults.describe_db_error(exc, "delivery"))
    log.info("%s · %s → %s", finess, name, moved_to)


def _write_receipt(region: Region, remote, finess: str, name: str, r: dict) -> None:
    """The receipt of a file in its establishment's ack/ (text and JSON), written whole or replaced."""
    ack_dir = region.remote_dir("ack", finess)
    remote.put_bytes(posixpath.join(ack_dir, f"{name}.ack.txt"), receipt_text(r).encode("utf-8"))
    remote.put_bytes(posixpath.join(ack_dir, f"{name}.ack.json"),
                     json.dumps(r, ensure_ascii=False, indent=1).encode("utf-8"))
