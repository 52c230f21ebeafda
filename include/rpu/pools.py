"""`rpu pools sync`: the Airflow pools the region DAGs' tasks take (rpu.dagset.task_pools), from the region files.

| pool               | tasks                                                    | slots (region file `pools:`)       |
|--------------------|----------------------------------------------------------|------------------------------------|
| `rpu_db_<code>`    | the region's PostgreSQL load: `ingest`, the sends' `plan`, the reprise's `send` | `pools.db` (4) |
| `rpu_gx_gate`      | the Great Expectations gate, every region together       | largest `pools.gx_gate` (2)        |
| `rpu_sftp_<target>`| uploads to the InVS, ATIH, ARS SFTP servers (the sends' `send`), every region together | largest `pools.sftp` (4) |

A pool is created when missing and its slots set to the region files' value; pools of other names are left alone
(nothing is deleted). Airflow's scheduler does not run a task whose pool does not exist: run the sync (or
`rpu roles sync`, which runs it too) when a region is added; `rpu region add --create-connections` does.
"""
from __future__ import annotations

from collections.abc import Iterable

from rpu import dagset
from rpu.config import RECIPIENTS, Region


def desired_pools(regions: Iterable[Region]) -> dict[str, tuple[int, str]]:
    """Pool name → (slots, description) for these regions (none when there is no region)."""
    regions = list(regions)
    if not regions:
        return {}
    pools = {dagset.db_pool(r.code): (r.pools.db, f"RPU: load on the PostgreSQL database of region {r.code}")
             for r in regions}
    pools[dagset.GATE_POOL] = (max(r.pools.gx_gate for r in regions),
                               "RPU: the Great Expectations quality gate, every region")
    for name in RECIPIENTS:
        pools[dagset.sftp_pool(name)] = (max(r.pools.sftp for r in regions),
                                         f"RPU: uploads to the {name.upper()} SFTP server, every region")
    return pools


def sync(regions: list[Region], *, dry_run: bool = False, out=print) -> dict:
    """Create the missing pools and set their slots in Airflow's metadata database; returns counts."""
    from airflow.models.pool import Pool   # here, not at import: the domain package does not need Airflow

    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for name, (slots, description) in sorted(desired_pools(regions).items()):
        pool = Pool.get_pool(name)
        if pool is not None and pool.slots == slots and (pool.description or "") == description:
            counts["unchanged"] += 1
            continue
        what = "created" if pool is None else "updated"
        counts[what] += 1
        out(f"pool {name}: {what} ({slots} slot(s))"
            + (f", was {pool.slots}" if pool is not None and pool.slots != slots else ""))
        if not dry_run:
            Pool.create_or_update_pool(name, slots, description, include_deferred=False)
    return counts
