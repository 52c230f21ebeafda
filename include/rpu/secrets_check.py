"""The start-up check of the image's secrets: every container of the stack runs it (deploy/entrypoint.sh) before
Airflow starts, and refuses to start when a secret is missing, a placeholder or too short. Anyone who knows the
JWT secret or the API secret key can forge a token; a placeholder left from `.env.example` is public.

A secret is read, in this order, from `NAME`, from the file named by `NAME_FILE` (Docker/Kubernetes secrets; the
entrypoint exports `NAME` from it) or from the output of the command in `NAME_CMD` (Airflow's own convention for
its sensitive settings, run the way Airflow runs it: split like a shell line, no shell). A value is never
printed: messages name the variable and the rule only.

    python -m rpu.secrets_check            the secrets of every Airflow container
    python -m rpu.secrets_check --init     plus the ones airflow-init uses (admin password, regional DB admin)
    python -m rpu.secrets_check --names    the variables the entrypoint may read from NAME_FILE
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

KEY_MIN = 32          # JWT secret, API secret key: python -c "import secrets; print(secrets.token_urlsafe(32))"
PASSWORD_MIN = 12     # database and admin passwords

# words that betray a value nobody chose (compared without case and punctuation)
PLACEHOLDER_WORDS = ("changeme", "changethis", "placeholder", "example", "secret", "password", "passwd", "admin",
                     "airflow", "default", "xxxx", "todo", "fixme", "1234", "azerty", "qwerty")


@dataclass(frozen=True)
class Secret:
    name: str
    kind: str          # "key" | "fernet" | "password" | "url" (the password inside a database URL)
    init_only: bool = False


SECRETS = (
    Secret("AIRFLOW__CORE__FERNET_KEY", "fernet"),
    Secret("AIRFLOW__API_AUTH__JWT_SECRET", "key"),
    Secret("AIRFLOW__API__SECRET_KEY", "key"),
    Secret("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "url"),
    Secret("AIRFLOW_ADMIN_PASSWORD", "password", init_only=True),
    Secret("RPU_DB_ADMIN_PASSWORD", "password", init_only=True),
)


class SecretError(ValueError):
    """A secret refused: the message names the variable and the rule, never the value."""


def resolve(name: str, env: dict[str, str]) -> str | None:
    """The secret's value from NAME, NAME_FILE or NAME_CMD (in this order); None when none is set."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
    command = env.get(f"{name}_CMD")
    if command:
        try:
            out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise SecretError(f"{name}_CMD: the command could not run ({type(exc).__name__})") from None
        if out.returncode != 0:
            raise SecretError(f"{name}_CMD: the command failed (exit {out.returncode})")
        return out.stdout.rstrip("\r\n")
    return None


def placeholder(value: str) -> bool:
    """A value nobody chose: empty, one repeated character, a known placeholder word, or `<…>`/`${…}`."""
    folded = re.sub(r"[^a-z0-9]", "", value.lower())
    if not folded or len(set(value)) <= 2 or value.startswith(("<", "${", "$(")):
        return True
    return any(word in folded for word in PLACEHOLDER_WORDS)


def check_value(secret: Secret, value: str) -> None:
    """Raise SecretError when the value is not acceptable for its kind."""
    name = secret.name
    if secret.kind == "url":
        try:
            password = urlsplit(value).password
        except ValueError:
            raise SecretError(f"{name}: not a URL") from None
        if not password:
            raise SecretError(f"{name}: the database URL has no password")
        _check_text(name + " (its password)", password, PASSWORD_MIN)
    elif secret.kind == "fernet":
        if placeholder(value):
            raise SecretError(f"{name}: a placeholder, not a key: generate one with "
                              "python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"")
        try:
            raw = base64.urlsafe_b64decode(value.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            raise SecretError(f"{name}: not a Fernet key (32 bytes, URL-safe base64)")
    else:
        _check_text(name, value, KEY_MIN if secret.kind == "key" else PASSWORD_MIN)


def _check_text(name: str, value: str, minimum: int) -> None:
    if placeholder(value):
        raise SecretError(f"{name}: a placeholder (such as the values of .env.example), not a secret")
    if len(value) < minimum:
        raise SecretError(f"{name}: too short ({len(value)} characters, at least {minimum})")


def problems(env: dict[str, str], init: bool = False) -> list[str]:
    """Every refusal, one line per secret (empty when all are acceptable)."""
    out = []
    for secret in SECRETS:
        if secret.init_only and not init:
            continue
        try:
            value = resolve(secret.name, env)
            if value is None:
                raise SecretError(f"{secret.name}: not set (nor {secret.name}_FILE, nor {secret.name}_CMD)")
            check_value(secret, value)
        except SecretError as exc:
            out.append(str(exc))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--names"]:
        print("\n".join(s.name for s in SECRETS))
        return 0
    if args not in ([], ["--init"]):
        print(__doc__, file=sys.stderr)
        return 2
    found = problems(dict(os.environ), init=args == ["--init"])
    for line in found:
        print(f"secrets: refused: {line}", file=sys.stderr)
    if found:
        print("secrets: the stack does not start with these secrets; set them in .env (or NAME_FILE / NAME_CMD)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
