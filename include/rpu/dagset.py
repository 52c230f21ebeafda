"""The Airflow DAGs of a region, as the domain knows them: their kinds, ids and tags, which timeouts apply, who
may trigger them, the pools their tasks take, and the text of the region's DAG file.

dags/rpu_dags builds one DAG per kind listed here (its factories take the id, tags and policy from this module);
`rpu roles sync` and `rpu region add` read the same list without building any DAG. The domain package never
imports dags/: this module is the one place both sides agree on.
"""
from __future__ import annotations

from dataclasses import dataclass

DAG_FILE_PREFIX = "region_"
ARS_PREFIX = "ARS_"
ATIH_ROLE = "ATIH"          # national operations (ATIH): the role that releases quarantined batches

# Airflow pools (created by `rpu pools sync`, also run by `rpu roles sync`; sizes in rpu.pools):
GATE_POOL = "rpu_gx_gate"   # the Great Expectations gate (CPU and memory heavy), every region together
DB_POOL_PREFIX = "rpu_db_"  # + region code: the load on the region's PostgreSQL (ingest, the sends' queries)
SFTP_POOL_PREFIX = "rpu_sftp_"   # + recipient: uploads to one national SFTP server (InVS, ATIH, ARS), all regions


@dataclass(frozen=True)
class DagKind:
    name: str                        # the DAG id is `<code>_<name>`
    timeouts: str                    # the `timeouts.<kind>` of the region file that applies
    tags: tuple[str, ...]            # after the region code and "rpu"
    triggered_by: str | None = None  # "ars": the region's ARS role triggers it; "atih": the ATIH role (rpu roles sync)
    recipient: str | None = None     # a scheduled send: to whom


INTAKE = DagKind("intake", "intake", ("intake",))
SEND_INVS = DagKind("send_invs", "send", ("send_invs", "invs"), recipient="invs")
EXPORT_ARS = DagKind("export_ars", "send", ("export_ars", "ars"), recipient="ars")
SEND_ATIH = DagKind("send_atih", "send", ("send_atih", "atih"), recipient="atih")
WATCH = DagKind("watch", "watch", ("watch",))
REPRISE = DagKind("reprise", "reprise", ("reprise",), triggered_by="ars")
# releasing a quarantined batch: by hand, as the reprise (its timeouts: `timeouts.reprise`), by ATIH operations only
RELEASE = DagKind("release", "reprise", ("release", "quality"), triggered_by="atih")
KINDS = (INTAKE, SEND_INVS, EXPORT_ARS, SEND_ATIH, WATCH, REPRISE, RELEASE)
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


def trigger_role(code: str, kind: DagKind) -> str | None:
    """The one role (besides Admin) that may trigger the region's DAG of this kind, or None: nobody by hand.
    `rpu roles sync` grants it read and trigger on that DAG alone. The DAGs declare no `access_control`: FAB fails
    the import of a DAG naming a role that does not exist yet, so a new region's DAGs would not parse before the
    sync; the roles are the sync's business, the DAGs parse whatever the roles table holds."""
    if kind.triggered_by == "ars":
        return ars_role(code)
    if kind.triggered_by == "atih":
        return ATIH_ROLE
    return None


def triggered_ids(code: str) -> dict[str, str]:
    """{DAG id: the role that triggers it} for the region's DAGs triggered by hand."""
    return {dag_id(code, k): trigger_role(code, k) for k in KINDS if k.triggered_by}


def db_pool(code: str) -> str:
    """The pool of the tasks loading the region's PostgreSQL (ingest, the sends' queries)."""
    return f"{DB_POOL_PREFIX}{code}"


def sftp_pool(recipient: str) -> str:
    """The pool of the uploads to one recipient's SFTP server (`invs`, `atih`, `ars`), shared by every region."""
    return f"{SFTP_POOL_PREFIX}{recipient}"


def task_pools(code: str, kind: DagKind) -> dict[str, str]:
    """Task id → pool, for the region's DAG of this kind (a task not listed: Airflow's default_pool). The
    factories take their pools here, the DAG policy test checks them against it."""
    if kind is INTAKE:
        return {"ingest": db_pool(code), "gate": GATE_POOL}
    if kind.recipient:
        return {"plan": db_pool(code), "send": sftp_pool(kind.recipient)}
    if kind is REPRISE:
        return {"send": db_pool(code)}       # its files' queries (it uploads to several servers: no SFTP pool)
    return {}


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
