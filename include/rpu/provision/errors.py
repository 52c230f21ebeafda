"""What provisioning refuses (bad input, exit 2) and what fails (a server, exit 1)."""
from __future__ import annotations


class ProvisionError(ValueError):
    """Bad input: nothing was changed (exit 2)."""


class ServiceError(RuntimeError):
    """A server could not be reached or refused an operation (exit 1)."""


def fail(problems: list[str]) -> None:
    if problems:
        raise ProvisionError("\n  ".join(["refused, nothing was changed:", *problems]))

