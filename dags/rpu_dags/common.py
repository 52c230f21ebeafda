"""What every factory shares: the start date and the default arguments of a region's DAGs."""
from __future__ import annotations

from datetime import timedelta

import pendulum

from rpu.config import Region

START = pendulum.datetime(2026, 1, 1)


def default_args(region: Region) -> dict:
    """Owner (the region's team) and retries for every task of a region's DAGs."""
    return {"owner": region.team, "retries": region.retries,
            "retry_delay": timedelta(minutes=region.retry_delay_minutes)}
