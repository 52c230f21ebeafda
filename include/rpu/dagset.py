"""The Airflow DAGs of a region, as the domain knows them: their kinds, ids and tags, which timeouts apply, who
may trigger them, and the text of the region's DAG file.

dags/rpu_dags builds one DAG per kind listed here (its factories take the id, tags and policy from this module);
`rpu roles sync` and `rpu region add` read the same list without building any DAG. The domain package never
imports dags/: this module is the one place both sides agree on.
"""
from __future__ import annotations

from dataclasses import dataclass

DAG_FILE_PREFIX = "region_"
ARS_PREFIX = "ARS_"


@dataclass(frozen=True)
class DagKind:
    name: str                        # the DAG id is `<code>_<name>`
    timeouts: str                    # the `timeouts.<kind>` of the region file that applies
    tags: tuple[str, ...]            # after the region code and "rpu"
    ars_triggers: bool = False       # the region's ARS may read and trigger it (the DAG's own access_control)
    recipient: str | None = None     # a scheduled send: to whom


INTAKE = DagKind("intake", "intake", ("intake",))
SEND_INVS = DagKind("send_invs", "send", ("send_invs", "invs"), recipient="invs")
EXPORT_ARS = DagKind("export_ars", "send", ("export_ars", "ars"), recipient="ars")
SEND_ATIH = DagKind("send_atih", "send", ("send_atih", "atih"), recipient="atih")
WATCH = DagKind("watch", "watch", ("watch",))
REPRISE = DagKind("reprise", "reprise", ("reprise",), ars_triggers=True)
KINDS = (INTAKE, SEND_INVS, EXPORT_ARS, SEND_ATIH, WATCH, REPRISE)
BY_NAME = {k.name: k for k in KINDS}
# the scheduled send of each recipient
SENDS = {"invs": SEND_INVS, "ars": EXPORT_ARS, "atih": SEND_ATIH}

# The DAG file of a region. (Airflow's safe mode parses only files that mention both "airflow" and "dag": the
# docstring does.)
STUB = '''"""Airflow DAGs of region {code!r}, from config/regions/{code}.yaml (file written by `rpu region add`)."""
from rpu_dags import build_region

build_region(__file__, globals())
'''


def kind(name: str) -> DagKind:
    return BY_NAME[name]


def dag_id(code: str, kind: DagKind | str) -> str:
    return f"{code}_{kind if isinstance(kind, str) else kind.name}"


def dag_ids(code: str) -> list[str]:
    """Every DAG id of region `code`, in the order of KINDS."""
    return [dag_id(code, k) for k in KINDS]


def tags(code: str, kind: DagKind) -> list[str]:
    return [code, "rpu", *kind.tags]


def schedule(region, kind: DagKind) -> str | None:
    """The cron of a region's DAG of this kind, from its region file; None: triggered by hand (the reprise)."""
    if kind is INTAKE:
        return region.intake.schedule
    if kind.recipient:
        return region.sends.schedule(kind.recipient)
    if kind is WATCH:
        return region.watch.schedule
    return None


def ars_role(code: str) -> str:
    """The Airflow role of the ARS of region `code` (made by `rpu roles sync`)."""
    return f"{ARS_PREFIX}{code}"


def access_control(code: str, kind: DagKind) -> dict | None:
    """The DAG's own access_control (FAB auth manager): the region's ARS may read and trigger the DAGs of the
    kinds it triggers, no other region's; Airflow applies it when it parses the DAG. None: roles decide."""
    if not kind.ars_triggers:
        return None
    return {ars_role(code): {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}}


def self_managed_ids(code: str) -> list[str]:
    """The DAG ids whose permissions their own access_control manages (left alone by `rpu roles sync`)."""
    return [dag_id(code, k) for k in KINDS if k.ars_triggers]


def dag_file_name(code: str) -> str:
    """The region's DAG file in the DAG folder: `region_<code>.py`."""
    return f"{DAG_FILE_PREFIX}{code}.py"


def region_code(dag_file: str) -> str:
    """`…/region_<code>.py` → `<code>`."""
    name = dag_file.replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".py").removeprefix(DAG_FILE_PREFIX)


def stub_text(code: str) -> str:
    """The text of the region's DAG file (written by `rpu region add`): a call to rpu_dags.build_region."""
    return STUB.format(code=code)
