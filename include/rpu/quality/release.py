"""Releasing a batch the quality gate quarantined: its visits are forwarded again by the next exports."""
from __future__ import annotations

from rpu import store


class NotQuarantined(LookupError):
    pass


def release(conn, file_id: int, by: str) -> dict:
    """Release a quarantined file: its visits are forwarded again by the next exports. Idempotent: releasing a
    released file changes nothing (`already` True). Raises NotQuarantined for a file never quarantined."""
    with conn.transaction():
        row = store.fetch_one(conn, "quality_release", {"file_id": file_id, "by": by})
        already = row is None
        if already:
            row = store.fetch_one(conn, "quality_quarantine_by_file", {"file_id": file_id})
            if row is None:
                raise NotQuarantined(f"file #{file_id} is not in quarantine")
    return {"file_id": file_id, "file": row["file_name"], "etab": row["etab"],
            "expectations": list(row["expectations"]), "released_at": row["released_at"],
            "released_by": row["released_by"], "already": already}
