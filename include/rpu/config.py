"""Region files (config/regions/<code>.yaml) → typed, validated objects.

A region file holds only what differs from the defaults; the defaults live in this module, in one place.
Errors name the file and the path of the faulty value, in plain words.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, is_dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from rpu import resources
from rpu import rpu_format
from rpu import expectations

# The project's directory: config/regions, var/ and the relative paths of region files start there. In the
# repository, its root; with the package installed from a wheel (the Docker image), $RPU_PROJECT_DIR, else the
# current directory.
PROJECT_DIR = (Path(__file__).resolve().parents[2] if resources.in_checkout()
               else Path(os.environ.get("RPU_PROJECT_DIR") or Path.cwd()).resolve())


def data_dir() -> Path:
    """This machine's data directory (`RPU_DATA_DIR`, default var/): a task's local scratch lives there, and the
    shared storage too unless `RPU_STORAGE_URL` names another place."""
    return Path(os.environ.get("RPU_DATA_DIR", PROJECT_DIR / "var"))


def is_url(location) -> bool:
    """A storage location given as a URL (`s3://…`, `file://…`) rather than a local path."""
    return isinstance(location, str) and "://" in location


def as_location(value: str | Path) -> Path | str:
    """A storage location from its text: a URL stays a string, anything else is a local Path."""
    return value if is_url(value) else Path(value)


def join_location(location: Path | str, *parts: str) -> Path | str:
    """The location `parts` under `location` (a Path stays a Path, a URL stays a URL string)."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(location).joinpath(*parts)


def storage_root() -> Path | str:
    """Where the archive and the outbox live (rpu.storage): `RPU_STORAGE_URL` — a local path, or a URL reached
    through Airflow's ObjectStoragePath (connection `rpu_storage`) — by default the data directory."""
    url = os.environ.get("RPU_STORAGE_URL", "").strip()
    return as_location(url) if url else data_dir()


def _location(value: str | None, *default: str) -> Path | str:
    """A region's storage location: its own setting (path or URL), else `default` under the storage root."""
    return as_location(value) if value else join_location(storage_root(), *default)


def regions_dir() -> Path:
    """Where region files are read: $RPU_REGIONS_DIR, else config/regions of the project."""
    return Path(os.environ.get("RPU_REGIONS_DIR") or PROJECT_DIR / "config" / "regions")


RECIPIENTS = ("invs", "ars", "atih")
ATIH_SCHEDULES = {"monthly": "0 6 2 * *", "weekly": "0 6 * * 1"}
SEND_SCHEDULES = {"invs": "30 5 * * *", "ars": "0 6 * * *", "atih": ATIH_SCHEDULES["monthly"]}
# the key of each recipient's cron under `schedules:` of the region file
SCHEDULE_KEYS = {"invs": "send_invs", "ars": "export_ars", "atih": "send_atih"}
PERIOD_MARGIN_DAYS = 31   # a file replaces at most this many days beyond its visits' span (docs/intake.md)
CHUNK_FILES = 20          # files per mapped intake task instance (80 establishments: 4 tasks)
DEMO_GEO_TABLE = resources.path("data", "pmsi_geo_sample.csv")
# Timeouts of each kind of DAG (minutes): a task running longer is failed (then retried), so that one hung SFTP
# transfer cannot block every later run (max_active_runs=1); a whole run longer than dagrun_minutes is failed.
TIMEOUT_KINDS = ("intake", "send", "watch", "reprise")
TIMEOUTS = {"intake": {"task_minutes": 30, "dagrun_minutes": 120},
            "send": {"task_minutes": 60, "dagrun_minutes": 360},
            "watch": {"task_minutes": 30, "dagrun_minutes": 120},
            "reprise": {"task_minutes": 120, "dagrun_minutes": 480}}
_EMAIL = {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+$"}
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~", ".lock", ".writing")

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "name", "timezone", "establishments"],
    "properties": {
        "code": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{1,30}$"},
        "name": {"type": "string", "minLength": 1},
        "timezone": {"type": "string", "minLength": 1},
        "team": {"type": "string", "minLength": 1},
        "connections": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "string", "minLength": 1} for k in ("db", "sftp_intake", "smtp")},
        },
        "intake": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "schedule": {"type": "string", "minLength": 1},
                "base_dir": {"type": "string"},
                "stable_seconds": {"type": "number", "minimum": 0},
                "max_file_mb": {"type": "number", "exclusiveMinimum": 0},
                "period_margin_days": {"type": "integer", "minimum": 0, "maximum": 366},
                "chunk_files": {"type": "integer", "minimum": 1, "maximum": 500},
                "temp_suffixes": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "layout": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {k: {"type": "string", "pattern": r"\{finess\}"}
                                   for k in ("inbox", "archive", "rejected", "ack")},
                },
            },
        },
        "archive_dir": {"type": "string", "minLength": 1},
        "archive_retention_days": {"type": ["integer", "null"], "minimum": 1},
        "outbox_dir": {"type": "string", "minLength": 1},
        "window_days": {"type": "integer", "minimum": 1, "maximum": 31},
        "recipients": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "object", "additionalProperties": False,
                               "properties": {"conn_id": {"type": "string", "minLength": 1},
                                              "directory": {"type": "string"}}}
                           for k in RECIPIENTS},
        },
        "schedules": {
            "type": "object",
            "additionalProperties": False,
            "properties": {**{k: {"type": "string", "minLength": 1} for k in ("send_invs", "export_ars", "send_atih")},
                           "send_invs_deadline": {"type": "string", "pattern": _HHMM + "|^none$"}},
        },
        "atih": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"frequency": {"enum": ["monthly", "weekly"]},
                           "geo_table": {"type": "string", "minLength": 1},
                           "geo_min_match": {"type": "number", "minimum": 0, "maximum": 1}},
        },
        "watch": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cutoff": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                "daily_digest": {"type": "boolean"},
                "history_weeks": {"type": "integer", "minimum": 2, "maximum": 52},
            },
        },
        "quality": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"blocking": {"type": "array", "items": {"type": "string", "minLength": 1}}},
        },
        "old_concentrator": {"type": "boolean"},
        "pools": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "integer", "minimum": 1, "maximum": 256} for k in ("db", "gx_gate", "sftp")},
        },
        "ars_export": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"identifying": {"type": "boolean"}},
        },
        "retries": {"type": "integer", "minimum": 0, "maximum": 20},
        "sftp_connect_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
        "retry_delay_minutes": {"type": "number", "minimum": 0},
        "retry_max_delay_minutes": {"type": "number", "minimum": 0},
        "timeouts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "object", "additionalProperties": False,
                               "properties": {"task_minutes": {"type": "number", "exclusiveMinimum": 0},
                                              "dagrun_minutes": {"type": "number", "exclusiveMinimum": 0}}}
                           for k in TIMEOUT_KINDS},
        },
        "alerts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"ars": {"type": "array", "items": _EMAIL},
                           "ars_none": {"type": "boolean"},
                           "ops": {"type": "array", "items": _EMAIL}},
        },
        "establishments": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["finess", "name"],
                "properties": {
                    "finess": {"type": "string"},
                    "finess_ej": {"type": "string"},
                    "name": {"type": "string", "minLength": 1},
                    "status": {"enum": ["active", "shadow"]},
                    "contact": _EMAIL,
                },
            },
        },
    },
}


class ConfigError(ValueError):
    """A region file is invalid; the message names the file and the faulty value."""


def finess_is_valid(finess: str) -> bool:
    """9 characters `[0-9][0-9AB][0-9]{7}`, the 9th a Luhn key (not checked for Corsica's 2A/2B)."""
    if not isinstance(finess, str) or not re.fullmatch(rpu_format.FINESS_RE, finess):
        return False
    if finess[1] in "AB":
        return True
    total = 0
    for i, ch in enumerate(reversed(finess)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def finess_with_key(first8: str) -> str:
    """Complete 8 digits with their Luhn key (used by the synthetic generator and provisioning)."""
    for k in range(10):
        if finess_is_valid(first8 + str(k)):
            return first8 + str(k)
    raise ValueError(first8)


@dataclass(frozen=True)
class Establishment:
    finess: str
    name: str
    status: str = "active"
    finess_ej: str | None = None
    contact: str | None = None

    @property
    def identifiers(self) -> frozenset[str]:
        """The FINESS numbers a file header of this establishment may carry (ET or EJ)."""
        return frozenset(x for x in (self.finess, self.finess_ej) if x)


@dataclass(frozen=True)
class Layout:
    inbox: str = "{finess}/inbox"
    archive: str = "{finess}/archive"
    rejected: str = "{finess}/rejected"
    ack: str = "{finess}/ack"


@dataclass(frozen=True)
class Recipient:
    name: str           # invs | ars | atih
    conn_id: str        # Airflow SFTP connection
    directory: str      # remote directory ("" = the account's home)


@dataclass(frozen=True)
class IntakeSettings:
    """`intake:` of the region file: the establishments' inboxes and how files are taken from them."""
    schedule: str = "*/10 * * * *"
    base_dir: str = ""                          # intake.base_dir: the tree's root on the SFTP server
    layout: Layout = field(default_factory=Layout)
    stable_seconds: float = 5.0
    max_file_bytes: int = 512 * 1024 * 1024     # intake.max_file_mb
    temp_suffixes: tuple[str, ...] = TEMP_SUFFIXES
    period_margin_days: int = PERIOD_MARGIN_DAYS
    chunk_files: int = CHUNK_FILES


@dataclass(frozen=True)
class SendSettings:
    """What is sent to whom and when: `window_days`, `recipients:`, `schedules:`, `ars_export:`."""
    window_days: int = 7
    recipients: dict[str, Recipient] = field(default_factory=dict)
    schedules: dict[str, str] = field(default_factory=lambda: dict(SEND_SCHEDULES))   # recipient → cron
    invs_deadline: str | None = "08:00"         # schedules.send_invs_deadline
    ars_identifying: bool = False               # ars_export.identifying

    def schedule(self, recipient: str) -> str:
        """The cron of the scheduled send to `recipient` (invs, ars, atih)."""
        return self.schedules[recipient]


@dataclass(frozen=True)
class AtihSettings:
    """`atih:` of the region file: how often, and the postal code → PMSI geographic table."""
    frequency: str = "monthly"
    geo_table: Path | None = None
    geo_min_match: float = 0.95


@dataclass(frozen=True)
class WatchSettings:
    """`watch:` of the region file."""
    cutoff: str = "06:00"
    daily_digest: bool = False
    history_weeks: int = 8

    @property
    def schedule(self) -> str:
        """Cron of the watch DAG: every day at the cut-off hour."""
        hour, minute = self.cutoff.split(":")
        return f"{int(minute)} {int(hour)} * * *"


@dataclass(frozen=True)
class PoolSettings:
    """`pools:` of the region file: slots of the Airflow pools its tasks take (rpu.pools, rpu.dagset.task_pools).
    `db`: the region's own PostgreSQL pool; `gx_gate` and `sftp` are shared by every region (the largest wins)."""
    db: int = 4
    gx_gate: int = 2
    sftp: int = 4


@dataclass(frozen=True)
class QualitySettings:
    """`quality:` of the region file: the expectations whose failure quarantines a batch."""
    blocking: tuple[str, ...] = ()


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    timezone: str
    establishments: tuple[Establishment, ...]
    team: str
    db_conn_id: str
    sftp_intake_conn_id: str
    smtp_conn_id: str
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    sends: SendSettings = field(default_factory=SendSettings)
    atih: AtihSettings = field(default_factory=AtihSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    # shared storage locations (rpu.storage: a local Path or a URL; tests point them elsewhere with `adjusted`)
    archive_dir: Path | str = Path("var/archive")
    archive_retention_days: int | None = None   # None: keep every raw file
    outbox_dir: Path | str = Path("var/outbox")
    # every DAG of the region: retries, timeouts, who is told
    retries: int = 3
    retry_delay_minutes: float = 5.0
    retry_max_delay_minutes: float = 60.0
    timeouts: dict[str, dict[str, float]] = field(default_factory=lambda: {k: dict(v) for k, v in TIMEOUTS.items()})
    sftp_connect_attempts: int = 3
    ars_emails: tuple[str, ...] = ()
    ars_none: bool = False
    ops_emails: tuple[str, ...] = ()
    old_concentrator: bool = False
    source: Path | None = None
    pools: PoolSettings = field(default_factory=PoolSettings)

    def adjusted(self, **changes) -> Region:
        """A copy with some settings changed: a top-level field as `dataclasses.replace` takes it, a group's fields
        as a dict (`region.adjusted(intake={"max_file_bytes": 100}, outbox_dir=tmp)`)."""
        out = {}
        for name, value in changes.items():
            current = getattr(self, name)
            out[name] = (replace(current, **value) if isinstance(value, dict) and is_dataclass(current)
                         else value)
        return replace(self, **out)

    @property
    def active(self) -> tuple[Establishment, ...]:
        """Establishments whose data this concentrator forwards (shadow ones are still forwarded by the old one)."""
        return tuple(e for e in self.establishments if e.status == "active")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def establishment(self, finess: str) -> Establishment | None:
        """The establishment whose ET number is `finess`, else the first whose EJ number it is."""
        found = self.establishments_of(finess)
        return found[0] if found else None

    def establishments_of(self, finess: str) -> list[Establishment]:
        """Every establishment `finess` may designate: its site (ET), or all the sites of a legal entity (EJ)."""
        sites = [e for e in self.establishments if e.finess == finess]
        return sites or [e for e in self.establishments if e.finess_ej == finess]

    def remote_dir(self, kind: str, finess: str) -> str:
        """Path on the intake SFTP server of an establishment's inbox/archive/rejected/ack directory."""
        rel = getattr(self.intake.layout, kind).format(finess=finess)
        base = self.intake.base_dir.rstrip("/")
        return f"{base}/{rel}" if base else rel


def _project_path(value: str) -> Path:
    """A path of the region file: absolute, or relative to the project's root (not to the working directory)."""
    return (PROJECT_DIR / value).resolve()


def _human_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def parse_region(data: object, source: Path | str = "<region>") -> Region:
    """Validate a decoded region document and build the Region, with defaults filled in."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    if errors:
        lines = [f"{source}: {_human_path(e.path)}: {e.message}" for e in errors]
        raise ConfigError("invalid region file:\n  " + "\n  ".join(lines))
    assert isinstance(data, dict)
    problems = []
    try:
        ZoneInfo(data["timezone"])
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("Europe")
        problems.append(f"timezone: unknown time zone {data['timezone']!r} (expected e.g. Europe/Paris)")
    seen: set[str] = set()
    for i, e in enumerate(data["establishments"]):
        for key in ("finess", "finess_ej"):
            if key in e and not finess_is_valid(e[key]):
                problems.append(f"establishments[{i}].{key}: {e[key]!r} is not a valid FINESS number "
                                "(9 characters, the last one a Luhn check digit)")
        # an EJ may group several sites; a site (ET) is declared once
        if e["finess"] in seen:
            problems.append(f"establishments[{i}].finess: {e['finess']!r} is declared twice")
        seen.add(e["finess"])
    for i, e in enumerate(data["establishments"]):
        if e.get("finess_ej") in seen:
            problems.append(f"establishments[{i}].finess_ej: {e['finess_ej']!r} is the site (ET) number of an "
                            "establishment: an EJ number cannot also be an ET number")
    alerts = data.get("alerts", {})
    if not alerts.get("ars") and not alerts.get("ars_none") \
            and any(e.get("status", "active") == "active" for e in data["establishments"]):
        # the same-day "no transmission" alert would go nowhere: say it on purpose, or give the ARS's addresses
        problems.append("alerts.ars: no ARS address for a region with active establishments — the ARS would never "
                        "hear of a missing transmission; give its addresses (alerts.ars), or set alerts.ars_none: "
                        "true to run without ARS mails on purpose")
    geo = data.get("atih", {}).get("geo_table")
    if geo and _project_path(geo) == DEMO_GEO_TABLE and data["code"] != "demo":
        problems.append(f"atih.geo_table: {geo!r} is the demo sample, not ATIH's table: name the PMSI table of the "
                        "year, or leave the key out and load the table with `rpu geo load`")
    problems += expectations.blocking_problems(data.get("quality", {}).get("blocking", []))
    if problems:
        raise ConfigError("invalid region file:\n  " + "\n  ".join(f"{source}: {p}" for p in problems))

    code = data["code"]
    conns = data.get("connections", {})
    intake = data.get("intake", {})
    schedules = data.get("schedules", {})
    atih = data.get("atih", {})
    return Region(
        code=code,
        name=data["name"],
        timezone=data["timezone"],
        team=data.get("team", f"rpu-{code}"),
        establishments=tuple(
            Establishment(finess=e["finess"], name=e["name"], status=e.get("status", "active"),
                          finess_ej=e.get("finess_ej"), contact=e.get("contact"))
            for e in data["establishments"]
        ),
        db_conn_id=conns.get("db", f"rpu_{code}_db"),
        sftp_intake_conn_id=conns.get("sftp_intake", f"rpu_{code}_sftp_intake"),
        smtp_conn_id=conns.get("smtp", "smtp_default"),
        intake=IntakeSettings(
            schedule=intake.get("schedule", "*/10 * * * *"),
            base_dir=intake.get("base_dir", ""),
            layout=Layout(**intake.get("layout", {})),
            stable_seconds=float(intake.get("stable_seconds", 5.0)),
            max_file_bytes=int(float(intake.get("max_file_mb", 512)) * 1024 * 1024),
            temp_suffixes=tuple(intake.get("temp_suffixes", TEMP_SUFFIXES)),
            period_margin_days=intake.get("period_margin_days", PERIOD_MARGIN_DAYS),
            chunk_files=intake.get("chunk_files", CHUNK_FILES)),
        sends=SendSettings(
            window_days=data.get("window_days", 7),
            recipients={
                name: Recipient(name, r.get("conn_id", f"rpu_{code}_sftp_{name}"), r.get("directory", ""))
                for name in RECIPIENTS for r in [data.get("recipients", {}).get(name, {})]},
            schedules={name: schedules.get(SCHEDULE_KEYS[name], default) for name, default in
                       {**SEND_SCHEDULES, "atih": ATIH_SCHEDULES[atih.get("frequency", "monthly")]}.items()},
            invs_deadline=None if schedules.get("send_invs_deadline") == "none"
            else schedules.get("send_invs_deadline", "08:00"),
            ars_identifying=data.get("ars_export", {}).get("identifying", False)),
        atih=AtihSettings(
            frequency=atih.get("frequency", "monthly"),
            geo_table=_project_path(geo) if geo else None,
            geo_min_match=float(atih.get("geo_min_match", 0.95))),
        watch=WatchSettings(
            cutoff=data.get("watch", {}).get("cutoff", "06:00"),
            daily_digest=data.get("watch", {}).get("daily_digest", False),
            history_weeks=data.get("watch", {}).get("history_weeks", 8)),
        quality=QualitySettings(blocking=tuple(data.get("quality", {}).get("blocking", ()))),
        archive_dir=_location(data.get("archive_dir"), "archive", code),
        archive_retention_days=data.get("archive_retention_days"),
        outbox_dir=_location(data.get("outbox_dir"), "outbox", code),
        retries=data.get("retries", 3),
        retry_delay_minutes=float(data.get("retry_delay_minutes", 5)),
        retry_max_delay_minutes=float(data.get("retry_max_delay_minutes", 60)),
        timeouts={k: {**TIMEOUTS[k], **data.get("timeouts", {}).get(k, {})} for k in TIMEOUT_KINDS},
        sftp_connect_attempts=data.get("sftp_connect_attempts", 3),
        ars_emails=tuple(alerts.get("ars", ())),
        ars_none=alerts.get("ars_none", False),
        ops_emails=tuple(alerts.get("ops", ())),
        old_concentrator=data.get("old_concentrator", False),
        source=Path(source) if not isinstance(source, Path) else source,
        pools=PoolSettings(**data.get("pools", {})),
    )


def load_region(path: Path | str) -> Region:
    """Read and validate one region file."""
    path = Path(path)
    try:
        # libyaml's loader: ten times faster than the pure-Python one, and every DAG parse reads region files
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    region = parse_region(data, path)
    if path.stem != region.code:
        raise ConfigError(f"{path}: the file name must be the region code ({region.code}.yaml)")
    return region


def region_files(directory: Path | str | None = None) -> list[Path]:
    return sorted(Path(directory or regions_dir()).glob("*.yaml"))


def load_regions(directory: Path | str | None = None) -> list[Region]:
    """Every region of the directory; raises on the first invalid file (see region_files for isolation)."""
    return [load_region(p) for p in region_files(directory)]


def get_region(code: str, directory: Path | str | None = None) -> Region:
    path = Path(directory or regions_dir()) / f"{code}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in region_files(directory)) or "none"
        raise ConfigError(f"unknown region {code!r} (no {path}); known regions: {known}")
    return load_region(path)
