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
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path

from rpu import store
from rpu.config import Region
from rpu.problems import RULES

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


def archive_copy(region: Region, path: Path, owner: str, name: str, sha256: str) -> Path:
    """Keep the raw file: <archive_dir>/<FINESS>/<YYYY>/<MM>/<name> (a different content gets its hash)."""
    now = datetime.now(region.tz)
    directory = region.archive_dir / owner / f"{now:%Y}" / f"{now:%m}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    if target.exists() and sha256_of(target)[0] != sha256:
        target = directory / f"{name}.{sha256[:12]}"
    if not target.exists():
        tmp = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target


def ingest_path(region: Region, db_url: str, path: Path, *, sender: str | None = None, name: str | None = None,
                remote_path: str | None = None, progress=None, quality_gate: bool = True) -> dict:
    """Archive, check and load one local file, then run the quality gate on its batch (accepted files, in a
    transaction of its own after the load's: rpu.quality.run_gate); returns the receipt data (`receipt_data`).
    `quality_gate=False` leaves the gate out (benchmarks measure the load alone)."""
    path = Path(path)
    name = name or path.name
    sha256, size = sha256_of(path)
    archived = archive_copy(region, path, sender or "manual", name, sha256)
    with store.connection(db_url) as conn:
        resumed = None
        if remote_path:
            resumed = conn.execute(store.query("find_resumed"), dict(sha256=sha256, remote_path=remote_path)).fetchone()
        if resumed:
            file_id = resumed[0]
            log.info("%s from %s was already processed (file #%s): completing its delivery", name, sender, file_id)
        else:
            outcome = store.load_file(conn, path, region=region, sender=sender, name=name, sha256=sha256, size=size,
                                      archive_path=archived, remote_path=remote_path, progress=progress)
            file_id = outcome.file_id
        if quality_gate:
            from rpu import quality

            # also after a rerun: a crash between the load's commit and the gate's leaves the gate to do
            if quality.gate_needed(conn, file_id):
                quality.run_gate(conn, region, db_url, file_id)
        return receipt_data(conn, region, file_id)


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
        from rpu import quality

        out["quality"] = quality.file_quality(conn, file_id, region.tz)
    return out


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

def is_candidate(region: Region, name: str) -> bool:
    """Skip hidden files and names that say they are still being written."""
    return not name.startswith(".") and not name.lower().endswith(tuple(s.lower() for s in region.temp_suffixes))


def list_new_files(region: Region, remote, *, stable_seconds: float | None = None) -> list[dict]:
    """Files waiting in every establishment's inbox whose size and mtime did not change between two looks."""
    wait = region.stable_seconds if stable_seconds is None else stable_seconds

    def look() -> dict[str, tuple]:
        seen = {}
        for est in region.establishments:
            for f in remote.list_files(region.remote_dir("inbox", est.finess)):
                if is_candidate(region, f.name):
                    seen[f.path] = (est.finess, f)
        return seen

    first = look()
    if first and wait:
        time.sleep(wait)
    second = look() if wait else first
    items = []
    for path, (finess, f) in second.items():
        before = first.get(path)
        if before is None or (before[1].size, before[1].mtime) != (f.size, f.mtime):
            log.info("%s is still being written: left for the next run", path)
            continue
        items.append({"finess": finess, "path": path, "name": f.name, "size": f.size, "mtime": f.mtime})
    return items


def ingest_remote_file(region: Region, item: dict, remote, db_url: str, work_dir: Path | None = None) -> dict:
    """Download one inbox file, ingest it, then write the receipt in ack/ and move the file out of inbox/."""
    work = Path(work_dir or region.archive_dir.parent / "work" / region.code)
    work.mkdir(parents=True, exist_ok=True)
    local = work / f"{uuid.uuid4().hex[:8]}_{item['name']}"
    try:
        remote.download(item["path"], local)
        r = ingest_path(region, db_url, local, sender=item["finess"], name=item["name"], remote_path=item["path"])
    finally:
        local.unlink(missing_ok=True)
    finess = item["finess"]
    # after the commit only: receipt first, then the move (a rerun redoes both, never the load)
    ack_dir = region.remote_dir("ack", finess)
    remote.put_bytes(posixpath.join(ack_dir, f"{item['name']}.ack.txt"), receipt_text(r).encode("utf-8"))
    remote.put_bytes(posixpath.join(ack_dir, f"{item['name']}.ack.json"),
                     json.dumps(r, ensure_ascii=False, indent=1).encode("utf-8"))
    dest = region.remote_dir("rejected" if r["status"] == "rejected" else "archive", finess)
    moved_to = remote.move_into(item["path"], dest)
    log.info("%s %s: %s (%s visits loaded, %s rejected) → %s", finess, item["name"], r["status"],
             r["visits_loaded"], r["visits_rejected"], moved_to)
    return summary(r)
