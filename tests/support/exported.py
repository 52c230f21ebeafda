"""What the sends would hold: the rows of every export query and count over one establishment and period."""
from __future__ import annotations

from datetime import date

from rpu import store

KINDS = ("oscour", "atih", "ars", "reprise")


def exported(db: str, etab: str, start: date = date(2026, 10, 26), end: date = date(2026, 11, 1)) -> dict[str, int]:
    """{kind: visits} for export_oscour, export_atih (FINESS_ordre 0), export_ars and reprise_count."""
    with store.connection(db) as conn:
        params = {"etab": etab, "ordre": 0, "start": start, "end": end}
        return {
            "oscour": len(conn.execute(store.query("export_oscour"), params).fetchall()),
            "atih": len(conn.execute(store.query("export_atih"), params).fetchall()),
            "ars": len(conn.execute(store.query("export_ars").format(identifying=""), params).fetchall()),
            "reprise": conn.execute(store.query("reprise_count"), params | {"ordre": None}).fetchone()[0],
        }


def everywhere(n: int) -> dict[str, int]:
    """The same count in every export."""
    return dict.fromkeys(KINDS, n)
