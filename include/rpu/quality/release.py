"""Releasing a batch the quality gate quarantined: its visits are forwarded again by the next exports."""
from __future__ import annotations

from rpu import store


class NotQuarantined(LookupError):
    pass


def release(conn, file_id: int, by: str, reason: str | None = None) -> dict:
    """Release a quarantined file, recording who, when and why: its visits are forwarded again by the next
    exports. Idempotent: releasing a released file changes nothing (`already` True, the first release's who,
    when and why). Raises NotQuarantined for a file never quarantined."""
    with conn.transaction():
        row = store.fetch_one(conn, "quality_release", {"file_id": file_id, "by": by,
                                                        "reason": (reason or "").strip() or None})
        already = row is None
        if already:
            row = store.fetch_one(conn, "quality_quarantine_by_file", {"file_id": file_id})
            if row is None:
                raise NotQuarantined(f"file #{file_id} is not in quarantine")
    return {"file_id": file_id, "file": row["file_name"], "etab": row["etab"],
            "expectations": list(row["expectations"]), "released_at": row["released_at"],
            "released_by": row["released_by"], "reason": row["release_reason"], "already": already}


def file_id_of(conn, finess: str, file_name: str) -> int:
    """The received file id of an establishment's quarantined file, by its FINESS and file name (the release
    form's other way of naming it): the one held, else the last released. Raises NotQuarantined when no file of
    that name was quarantined, LookupError when several are held (then give the id, on the file's receipt)."""
    rows = store.fetch_all(conn, "quality_quarantine_by_name", {"etab": finess, "file_name": file_name})
    if not rows:
        raise NotQuarantined(f"no file {file_name!r} of establishment {finess} is in quarantine")
    held = [r["file_id"] for r in rows if r["released_at"] is None]
    if len(held) > 1:
        raise LookupError(f"{len(held)} files {file_name!r} of establishment {finess} are in quarantine "
                          f"(ids {', '.join(map(str, held))}): give the file id of the one to release")
    return rows[0]["file_id"]
