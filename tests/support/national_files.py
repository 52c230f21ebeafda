"""Small anonymised ATIH files for the national tests (the layout `<code>_send_atih` writes)."""
from __future__ import annotations

import uuid

from support.rpu_xml import rpu_file, visit


def receive(tmp_path, db, data: bytes, name: str, region: str = "demo") -> dict:
    """`rpu syrius receive` of one file, through the domain function."""
    from rpu.config import get_region
    from rpu.national import reception, settings

    path = tmp_path / name
    path.write_bytes(data)
    return reception.receive_path(settings.National(), get_region(region), db, path)


def atih_visit(day: str, **changes) -> dict:
    """One anonymised visit entered on `day` (JJ/MM/AAAA): CODE_GEO and AGE, no CP, COMMUNE or NAISSANCE."""
    v = visit(ENTREE=f"{day} 10:00", SORTIE=f"{day} 12:00", **changes)
    out = {"CODE_GEO": "75012", "AGE": "45"}
    out.update({k: x for k, x in v.items() if k not in ("CP", "COMMUNE", "NAISSANCE")})
    return out


def atih_file(per_month: dict[int, int], *, year: int = 2026, finess: str = "990000127", ordre: str = "0",
              fin: str | None = None, extract: str | None = None, debut: str | None = None) -> bytes:
    """A cumulative file of `year`: per_month[m] visits entered on the 10th of month m."""
    visits = [atih_visit(f"10/{m:02d}/{year}") for m, n in sorted(per_month.items()) for _ in range(n)]
    last = max(per_month)
    import calendar

    fin = fin or f"{calendar.monthrange(year, last)[1]:02d}/{last:02d}/{year}"
    return rpu_file(visits, finess=finess, ordre=ordre, debut=debut or f"01/01/{year}", fin=fin,
                    extract=extract if extract is not None else f"02/{last % 12 + 1:02d}/{year + (last == 12)} 06:00:00")
