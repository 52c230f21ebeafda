"""Sending files to recipients, reliably: prepare once into the outbox, record in the send ledger, upload
atomically, record the outcome.

Idempotence: a slot is (recipient, kind, FINESS_ordre, period, run id, file name). The first attempt builds
the file into the outbox and records its sha256, EXTRACT and visit count (those of the rows written); every
retry of that slot uploads that very file again — never a second, different one. A later run for the same date
(a new run id) builds a new file from the data stored then, with a later EXTRACT: that is how a past date is
re-sent with its current content, superseding what was sent before.
"""
from __future__ import annotations

import logging
import posixpath
import re

from rpu import exports, storage, store
from rpu.config import Region
from rpu.exports import FileSpec

log = logging.getLogger(__name__)


def _row(cur) -> dict | None:
    r = cur.fetchone()
    return dict(zip([c.name for c in cur.description], r)) if r else None


def outbox_path(region: Region, spec: FileSpec, run_id: str):
    """The location of a slot's file in the shared storage (rpu.storage): a Path, or a URL string."""
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:120]
    return storage.join(region.outbox_dir, spec.recipient, safe_run, spec.file_name)


def recorded(conn, spec: FileSpec, run_id: str) -> dict | None:
    """The ledger entry of the slot of `spec` in the run `run_id`, if it was prepared."""
    return _row(conn.execute(store.query("ledger_slot"), spec.slot() | {"run_id": run_id}))


def _stored(entry: dict) -> bool:
    """The slot's file is in the shared storage with the bytes its ledger entry recorded."""
    loc = storage.location(entry["local_path"])
    return storage.exists(loc) and storage.sha256(loc) == entry["sha256"]


def prepare(conn, region: Region, spec: FileSpec, run_id: str) -> dict:
    """The ledger entry of the slot, building the file into the outbox (shared storage) the first time only:
    a retry, on this worker or another, finds it there and sends those very bytes."""
    slot = spec.slot() | {"run_id": run_id}
    entry = recorded(conn, spec, run_id)
    if entry and _stored(entry):
        return entry
    if entry:
        log.warning("%s for %s: its prepared file is gone from the outbox or altered (%s): built again", spec.file_name,
                    spec.recipient, entry["local_path"])
    path = outbox_path(region, spec, run_id)
    with storage.staged(path) as tmp:   # patient data: built locally 0600, stored whole
        written = exports.build(conn, region, spec, tmp)
        sha = exports.sha256_file(tmp)
        size = tmp.stat().st_size
    if spec.manifest:
        storage.write_bytes(_manifest(path), exports.manifest_bytes(region, spec, written, sha))
    with conn.transaction():
        entry = _row(conn.execute(store.query("ledger_prepare"), slot | {
            "sha256": sha, "size_bytes": size, "visits": written.visits, "local_path": str(path),
            "extract": written.extract, "held_back": written.held_back}))
    log.info("prepared %s for %s: %s visits", spec.file_name, spec.recipient, written.visits)
    return entry


def _manifest(location):
    return storage.location(f"{location}.manifest.json")


def deliver(conn, entry: dict, remote, directory: str) -> dict:
    """Upload a prepared file (and its manifest) atomically and record it sent (failures: see `send`). The
    bytes uploaded are those of the shared storage, checked against the sha256 recorded at preparation."""
    stored = storage.location(entry["local_path"])
    target = posixpath.join(directory, entry["file_name"]) if directory else entry["file_name"]
    if entry["status"] == "sent" and remote.size(target) == entry["size_bytes"]:
        return entry   # a rerun of a completed slot: already there
    manifest = _manifest(stored)
    if storage.exists(manifest):
        with storage.local_copy(manifest) as local_manifest:
            remote.put_file(local_manifest, target + ".manifest.json")
    with storage.local_copy(stored, entry["sha256"]) as local:
        remote.put_file(local, target)
    with conn.transaction():
        entry = _row(conn.execute(store.query("ledger_result"), {"id": entry["id"], "status": "sent", "error": None,
                                                                 "remote_path": target}))
    log.info("sent %s (%s visits) to %s:%s", entry["file_name"], entry["visits"], entry["recipient"], target)
    return entry


def send(region: Region, spec: FileSpec, run_id: str, db_url: str, open_remote) -> dict:
    """Prepare (once) and deliver one file; returns what the DAG shows (no patient data).

    `open_remote()` opens the recipient's SFTP session (a context manager); it is called after the file is
    prepared and recorded, so an outage leaves a `failed` ledger entry whose retry sends that same file."""
    with store.connection(db_url) as conn:
        entry = prepare(conn, region, spec, run_id)
        try:
            with open_remote() as remote:
                entry = deliver(conn, entry, remote, region.sends.recipients[spec.recipient].directory)
        except Exception as exc:   # outage, refused upload…: recorded, then raised for Airflow to retry
            with conn.transaction():
                conn.execute(store.query("ledger_result"), {"id": entry["id"], "status": "failed",
                                                             "error": f"{type(exc).__name__}: {exc}"[:500],
                                                             "remote_path": None})
            raise
    return summary(entry)


def summary(entry: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in entry.items()
            if k in ("recipient", "kind", "etab", "ordre", "period_start", "period_end", "file_name", "visits",
                     "status", "sha256", "attempts", "extract")}


def ledger(db_url: str, *, recipient: str | None = None, etab: str | None = None, limit: int = 200) -> list[dict]:
    with store.connection(db_url) as conn:
        cur = conn.execute(store.query("ledger_list"), {"recipient": recipient, "etab": etab, "limit": limit})
        return [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]
