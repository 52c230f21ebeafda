"""Who may see what on the dashboard: a scope derived from the Airflow user's roles (no Airflow import here).

| role (FAB)          | scope                                                              |
|---------------------|--------------------------------------------------------------------|
| `Admin`, `ATIH`     | every region, every establishment                                  |
| `ARS_<code>`        | region `<code>` in full (its rows, its total, its region-wide sends) |
| `Lecteur_<FINESS>`  | that establishment only: its own rows, never a region total        |

Roles add up (a user with `ARS_a` and `ARS_b` sees both regions). Any other role gives nothing: a user with
no dashboard role sees an empty index and gets 403 on every region and establishment page. With Airflow's
simple auth manager (the demo), its `admin` role sees everything and other roles nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

ADMIN_ROLES = frozenset({"Admin", "ATIH"})
ARS_PREFIX = "ARS_"
LECTEUR_PREFIX = "Lecteur_"


@dataclass(frozen=True)
class Scope:
    everything: bool = False
    regions: frozenset[str] = frozenset()          # region codes seen in full
    establishments: frozenset[str] = frozenset()   # FINESS (ET) seen one by one

    @classmethod
    def from_roles(cls, roles) -> Scope:
        roles = [r for r in roles if r]
        return cls(
            everything=any(r in ADMIN_ROLES for r in roles),
            regions=frozenset(r[len(ARS_PREFIX):] for r in roles if r.startswith(ARS_PREFIX)),
            establishments=frozenset(r[len(LECTEUR_PREFIX):] for r in roles if r.startswith(LECTEUR_PREFIX)),
        )

    def full_region(self, region) -> bool:
        """The whole region: every establishment, the region total, region-wide sends, unconfigured FINESS."""
        return self.everything or region.code in self.regions

    def establishments_of(self, region) -> list:
        """The region's establishments this user may see, in the region file's order."""
        if self.full_region(region):
            return list(region.establishments)
        return [e for e in region.establishments if e.finess in self.establishments]

    def sees_region(self, region) -> bool:
        return bool(self.establishments_of(region))

    def sees_establishment(self, region, finess: str) -> bool:
        return any(e.finess == finess for e in self.establishments_of(region))

    def describe(self) -> str:
        """In French, for the page header."""
        if self.everything:
            return "toutes les régions"
        parts = [f"région {c}" for c in sorted(self.regions)]
        parts += [f"établissement {f}" for f in sorted(self.establishments)]
        return ", ".join(parts) or "aucun périmètre (demandez un rôle ARS_<région> ou Lecteur_<FINESS>)"


def role_names(user) -> list[str]:
    """The role names of an Airflow user: FAB users have `roles` (objects with a `name`), the simple auth
    manager's users one `role` string (its `admin` maps to the FAB `Admin`)."""
    roles = getattr(user, "roles", None)
    if roles is not None:
        return [getattr(r, "name", None) or str(r) for r in roles]
    role = getattr(user, "role", None)
    if isinstance(role, str):
        return ["Admin"] if role.lower() == "admin" else [role]
    return []


def scope_of(user) -> Scope:
    return Scope.from_roles(role_names(user))
