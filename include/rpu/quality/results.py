"""Reading the stored results of the quality gate: a file's latest gate (receipts), the files that failed since a
time (the watch), every result over a period (reports and dashboards).
"""
from __future__ import annotations

from datetime import date, datetime

from rpu import store
from rpu.expectations import catalogue


def _failure(row: dict) -> dict:
    info = catalogue().get(row["expectation"], {})
    return {"name": row["expectation"], "suite": row["suite"],
            "description": info.get("description", row["expectation"]), "unit": info.get("unit", ""),
            "blocking": row["blocking"], "unexpected_count": row["unexpected_count"],
            "unexpected_percent": row["unexpected_percent"], "observed_value": row["observed_value"],
            "error": row["error"]}


def file_quality(conn, file_id: int, tz=None) -> dict | None:
    """The latest gate of a file, as its receipt shows it (times in `tz`, e.g. the region's); None when the gate
    never ran for it.

        {"status": "passed" | "failed" | "error" | "skipped", "suites": [{"suite", "version", "status"}],
         "failed": [{"name", "description", "unit", "blocking", "unexpected_count", "unexpected_percent",
                     "observed_value", "error"}],
         "error": None | "…", "quarantined": bool, "quarantine": None | {"expectations", "since", "released_at",
                                                                         "released_by", "release_reason"}}
    """
    cur = conn.execute(store.query("quality_file_results"), {"file_id": file_id})
    cols = [c.name for c in cur.description]
    rows = [dict(zip(cols, r)) for r in cur]
    if not rows:
        return None
    suites = {}
    for r in rows:
        suites.setdefault(r["suite"], {"suite": r["suite"], "version": r["suite_version"], "status": r["status"],
                                       "error": r["run_error"], "run_at": r["run_at"]})
    statuses = {s["status"] for s in suites.values()}
    status = next(s for s in ("error", "failed", "skipped", "passed") if s in statuses)
    q = store.fetch_one(conn, "quality_quarantine_by_file", {"file_id": file_id})

    def when(t: datetime | None) -> str | None:
        return t.astimezone(tz).isoformat(timespec="seconds") if t else None

    return {
        "status": status,
        "run_at": when(max(s["run_at"] for s in suites.values())),
        "suites": [{k: s[k] for k in ("suite", "version", "status")} for s in suites.values()],
        "failed": [_failure(r) for r in rows if r["expectation"] is not None and not r["success"]],
        "error": "; ".join(s["error"] for s in suites.values() if s["status"] == "error" and s["error"]) or None,
        "quarantined": bool(q and q["released_at"] is None),
        "quarantine": None if q is None else {
            "expectations": list(q["expectations"]), "since": when(q["quarantined_at"]),
            "released_at": when(q["released_at"]), "released_by": q["released_by"],
            "release_reason": q["release_reason"]},
    }


def failed_since(conn, since: datetime) -> list[dict]:
    """For the watch: every file whose quality gate ran since `since` and did not pass, oldest first.

        [{"file_id", "file", "etab", "sender", "received_at", "run_at", "status": "failed" | "error",
          "quarantined": bool, "error": None | "…",
          "failed": [{"name", "description", "blocking", "unexpected_count", "unexpected_percent", …}]}]
    """
    cur = conn.execute(store.query("quality_failed_since"), {"since": since})
    cols = [c.name for c in cur.description]
    out: dict[int, dict] = {}
    for r in (dict(zip(cols, x)) for x in cur):
        f = out.setdefault(r["file_id"], {
            "file_id": r["file_id"], "file": r["file_name"], "etab": r["etab"], "sender": r["sender"],
            "received_at": r["received_at"], "run_at": r["run_at"], "status": "failed",
            "quarantined": r["quarantined"], "error": None, "failed": []})
        if r["status"] == "error":
            f["status"] = "error"
            f["error"] = "; ".join(x for x in (f["error"], r["run_error"]) if x)
        if r["expectation"] is not None:
            f["failed"].append(_failure(r))
    return list(out.values())


def stored_results(conn, start: date, end: date, etab: str | None = None) -> list[dict]:
    """Every stored expectation result of the gates run on files received in [start, end] (local dates of the
    database session), for reports and dashboards: one dict per file, suite and expectation."""
    cur = conn.execute(store.query("quality_results"), {"start": start, "end": end, "etab": etab})
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur]
