"""The national settings: one optional file, config/national.yaml (or $RPU_NATIONAL_CONFIG), defaults here.

    timezone: Europe/Paris
    connections: {db: rpu_national_db, sftp: rpu_syrius_sftp, smtp: smtp_default}
    reception:
      schedule: "*/10 * * * *"
      drop_dir: "{region}"          # a region's drop directory on the Syrius server, as rpu_syrius_sftp sees it
      stable_seconds: 5
      max_file_mb: 512
    reconciliation: {missing_after_hours: 48}
    alerts: {ops: [syrius-exploitation@atih.example]}   # ATIH operations
    retries: 3

The regions are the project's region files (config/regions): their establishments tell which FINESS a region
may send, their ARS addresses who is told of a send that does not reconcile.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from rpu.config import PROJECT_DIR, TEMP_SUFFIXES, TIMEOUTS, ConfigError, IntakeSettings, Region

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "timezone": {"type": "string", "minLength": 1},
        "connections": {"type": "object", "additionalProperties": False,
                        "properties": {k: {"type": "string", "minLength": 1} for k in ("db", "sftp", "smtp")}},
        "reception": {"type": "object", "additionalProperties": False, "properties": {
            "schedule": {"type": "string", "minLength": 1},
            "drop_dir": {"type": "string", "pattern": r"\{region\}"},
            "stable_seconds": {"type": "number", "minimum": 0},
            "max_file_mb": {"type": "number", "exclusiveMinimum": 0}}},
        "reconciliation": {"type": "object", "additionalProperties": False,
                           "properties": {"missing_after_hours": {"type": "number", "minimum": 0}}},
        "alerts": {"type": "object", "additionalProperties": False,
                   "properties": {"ops": {"type": "array", "items": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+$"}}}},
        "retries": {"type": "integer", "minimum": 0, "maximum": 20},
        "retry_delay_minutes": {"type": "number", "minimum": 0},
        "sftp_connect_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
    },
}
CODE = "national"   # the outbox's and the failure mails' "region" of the ATIH side


@dataclass(frozen=True)
class National:
    timezone: str = "Europe/Paris"
    db_conn_id: str = "rpu_national_db"
    sftp_conn_id: str = "rpu_syrius_sftp"
    smtp_conn_id: str = "smtp_default"
    schedule: str = "*/10 * * * *"
    drop_dir: str = "{region}"
    stable_seconds: float = 5.0
    max_file_bytes: int = 512 * 1024 * 1024
    missing_after_hours: float = 48.0
    ops_emails: tuple[str, ...] = ()
    retries: int = 3
    retry_delay_minutes: float = 5.0
    sftp_connect_attempts: int = 3
    temp_suffixes: tuple[str, ...] = TEMP_SUFFIXES
    source: Path | None = field(default=None, compare=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def drop(self, region_code: str, sub: str = "") -> str:
        """A region's drop directory on the Syrius server, or its archive/, rejected/ or ack/ subdirectory."""
        base = self.drop_dir.format(region=region_code).rstrip("/")
        return f"{base}/{sub}" if sub else base

    def as_region(self) -> Region:
        """The ATIH side as the shared DAG helpers, the outbox and the failure mails know a "region": its own
        database, operations addresses, retries and timeouts (those of an intake)."""
        return Region(code=CODE, name="ATIH — plateforme Syrius", timezone=self.timezone, establishments=(),
                      team="atih", db_conn_id=self.db_conn_id, sftp_intake_conn_id=self.sftp_conn_id,
                      smtp_conn_id=self.smtp_conn_id,
                      intake=IntakeSettings(schedule=self.schedule, stable_seconds=self.stable_seconds,
                                            max_file_bytes=self.max_file_bytes, temp_suffixes=self.temp_suffixes),
                      retries=self.retries,
                      retry_delay_minutes=self.retry_delay_minutes,
                      timeouts={k: dict(v) for k, v in TIMEOUTS.items()},
                      sftp_connect_attempts=self.sftp_connect_attempts, ops_emails=self.ops_emails,
                      ars_none=True, source=self.source)


def config_path() -> Path:
    return Path(os.environ.get("RPU_NATIONAL_CONFIG") or PROJECT_DIR / "config" / "national.yaml")


def load(path: Path | str | None = None) -> National:
    """The national settings (defaults when the file does not exist); ConfigError names a faulty value."""
    import jsonschema

    path = Path(path) if path else config_path()
    if not path.exists():
        return National()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        raise ConfigError("invalid national settings:\n  " + "\n  ".join(
            f"{path}: {'.'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors))
    conns, rec = data.get("connections", {}), data.get("reception", {})
    base = National()
    return dataclasses.replace(
        base, timezone=data.get("timezone", base.timezone), db_conn_id=conns.get("db", base.db_conn_id),
        sftp_conn_id=conns.get("sftp", base.sftp_conn_id), smtp_conn_id=conns.get("smtp", base.smtp_conn_id),
        schedule=rec.get("schedule", base.schedule), drop_dir=rec.get("drop_dir", base.drop_dir),
        stable_seconds=float(rec.get("stable_seconds", base.stable_seconds)),
        max_file_bytes=int(float(rec.get("max_file_mb", 512)) * 1024 * 1024),
        missing_after_hours=float(data.get("reconciliation", {}).get("missing_after_hours",
                                                                     base.missing_after_hours)),
        ops_emails=tuple(data.get("alerts", {}).get("ops", ())), retries=data.get("retries", base.retries),
        retry_delay_minutes=float(data.get("retry_delay_minutes", base.retry_delay_minutes)),
        sftp_connect_attempts=data.get("sftp_connect_attempts", base.sftp_connect_attempts), source=path)
