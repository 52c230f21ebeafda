"""The dashboard: a FastAPI app mounted by Airflow's api-server under PREFIX, pages rendered on the server.

Every route depends on `current_user`: the Airflow user of the request (the UI's JWT cookie, or a bearer
token), else no page — a browser is sent to Airflow's login page (303, back here after login), any other
client gets 401. What a page shows is then cut to the user's scope (access.py): a region or establishment
outside it is 403, whether it exists or not (an unknown code is 404 only for those who see everything).
"""
from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from rpu.national import reconciliation as national_reconciliation
from rpu.national import settings as national_settings
from rpu_dashboard import data, svg
from rpu_dashboard.access import Scope, role_names, scope_of

log = logging.getLogger(__name__)

PREFIX = "/rpu"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MONTHS_FR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.")
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",           # shown inside Airflow's UI (same origin) only
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
}

app = FastAPI(title="Tableau de bord RPU", docs_url=None, redoc_url=None, openapi_url=None)


class LoginRequired(Exception):
    """No (valid) Airflow user on the request."""


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


_bearer = HTTPBearer(auto_error=False)


async def current_user(request: Request,
                       bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]):
    """The authenticated Airflow user, exactly as Airflow's own API resolves it (bearer token, else the UI's
    `_token` cookie); anything else — no token, expired, forged, user deleted or deactivated — is no user."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException

    try:
        user = await get_user(request, None, bearer)
    except HTTPException as exc:
        raise LoginRequired() from exc
    except (ValueError, LookupError) as exc:     # FAB: "User with id … not found / not active"
        raise LoginRequired() from exc
    if user is None or getattr(user, "is_anonymous", False) is True:
        raise LoginRequired()          # FAB's public role ([fab] auth_role_public) is no user either
    return user


User = Annotated[Any, Depends(current_user)]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@app.exception_handler(LoginRequired)
async def _login_required(request: Request, exc: LoginRequired):
    if _wants_html(request):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303,
                                headers=HEADERS)
    return JSONResponse({"detail": "Not authenticated"}, status_code=401,
                        headers=HEADERS | {"WWW-Authenticate": "Bearer"})


@app.exception_handler(Refused)
async def _refused(request: Request, exc: Refused):
    if not _wants_html(request):
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=HEADERS)
    return _render(request, "error.html", status_code=exc.status, status=exc.status, message=exc.message,
                   user_name=None, scope_text=None)


# --- rendering ----------------------------------------------------------------------------------------------

def _as_datetime(value):
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def fr_datetime(value, tz=None) -> str:
    value = _as_datetime(value)
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if tz is not None and value.tzinfo is not None:
            value = value.astimezone(tz)
        return value.strftime("%d/%m/%Y %H:%M")
    return str(value)


def fr_date(value) -> str:
    value = _as_datetime(value)
    if value is None:
        return "—"
    if isinstance(value, (date, datetime)):
        return value.strftime("%d/%m/%Y")
    return str(value)


def fr_pct(value, sign: bool = True) -> str:
    return "—" if value is None else f"{value:.1f}".replace(".", ",") + (" %" if sign else "")


def fr_num(value) -> str:
    return "—" if value is None else f"{value:,}".replace(",", "\u202f")


LABELS = {
    "file_status": {"accepted": "accepté", "rejected": "rejeté", "duplicate": "doublon"},
    "etab_status": {"active": "actif", "shadow": "en ombre"},
    "send_status": {"prepared": "préparé", "sent": "envoyé", "failed": "en échec"},
    "recipient": {"invs": "InVS / SpF", "ars": "ARS", "atih": "ATIH"},
    "kind": {"daily": "quotidien", "cumulative": "cumul annuel", "reprise": "reprise"},
}

_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters.update(dt=fr_datetime, d=fr_date, pct=fr_pct, num=fr_num)
_env.globals.update(LABELS=LABELS, MONTHS_FR=MONTHS_FR, SVG=svg,
                    RECONCILIATION={"labels": national_reconciliation.LABELS,
                                    "symbols": national_reconciliation.SYMBOLS})


def _base(request: Request) -> str:
    """Where this app is mounted, as the browser sees it (Airflow's base path included)."""
    return request.scope.get("root_path", "").rstrip("/")


def _render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    base = _base(request)
    airflow_root = base[: -len(PREFIX)] if base.endswith(PREFIX) else ""
    html = _env.get_template(template).render(base=base, airflow=airflow_root or "", **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _who(user) -> tuple[str, Scope]:
    name = ""
    try:
        name = user.get_name()
    except Exception:   # noqa: BLE001 - a name is cosmetic
        name = getattr(user, "username", "") or ""
    return name, scope_of(user)


def _year(value: str | None, region) -> int:
    if value is None or value == "":
        return data.today_in(region).year
    if not (len(value) == 4 and value.isdigit() and 2000 <= int(value) <= 2999):
        raise Refused(400, "Année invalide (AAAA attendu).")
    return int(value)


def _visible_region(code: str, scope: Scope):
    region = data.region_by_code(code)
    if region is None or not scope.sees_region(region):
        if region is None and scope.everything:
            raise Refused(404, f"Région inconnue : {code}.")
        raise Refused(403, "Accès refusé : cette région n'est pas dans votre périmètre.")
    return region


# --- pages --------------------------------------------------------------------------------------------------

@app.get("/", response_class=HTMLResponse)
def index(request: Request, user: User):
    name, scope = _who(user)
    regions, broken = data.regions()
    visible = [(r, scope.full_region(r), scope.establishments_of(r)) for r in regions if scope.sees_region(r)]
    return _render(request, "index.html", user_name=name, scope_text=scope.describe(), regions=visible,
                   broken=broken if scope.everything else [], roles=role_names(user))


@app.get("/regions/{code}", response_class=HTMLResponse)
def region_page(request: Request, user: User, code: str, year: str | None = None):
    name, scope = _who(user)
    region = _visible_region(code, scope)
    y = _year(year, region)
    shown = scope.establishments_of(region)
    page = data.load(region, finesses=[e.finess for e in shown], full=scope.full_region(region), year=y)
    return _render(request, "region.html", user_name=name, scope_text=scope.describe(), page=page,
                   establishment=None, names={e.finess: e.name for e in region.establishments},
                   can_reprise=scope.full_region(region))


@app.get("/regions/{code}/establishments/{finess}", response_class=HTMLResponse)
def establishment_page(request: Request, user: User, code: str, finess: str, year: str | None = None):
    name, scope = _who(user)
    region = _visible_region(code, scope)
    if not scope.sees_establishment(region, finess):
        if scope.full_region(region):
            raise Refused(404, f"Établissement inconnu dans la région {region.code} : {finess}.")
        raise Refused(403, "Accès refusé : cet établissement n'est pas dans votre périmètre.")
    y = _year(year, region)
    est = next(e for e in region.establishments if e.finess == finess)
    page = data.load(region, finesses=[finess], full=False, year=y)
    return _render(request, "region.html", user_name=name, scope_text=scope.describe(), page=page,
                   establishment=est, names={e.finess: e.name for e in region.establishments},
                   can_reprise=scope.full_region(region))


def _national_year(value: str | None) -> tuple[int, date]:
    today = datetime.now(national_settings.load().tz).date()
    if value is None or value == "":
        return today.year, today
    if not (len(value) == 4 and value.isdigit() and 2000 <= int(value) <= 2999):
        raise Refused(400, "Année invalide (AAAA attendu).")
    return int(value), today


@app.get("/national", response_class=HTMLResponse)
def national_page(request: Request, user: User, year: str | None = None):
    """ATIH's presentation page (rpu.national.report.grid, as `rpu report national`): the regions the user sees
    in full, with their reconciliation cells; a reader's establishments next to the regional base."""
    name, scope = _who(user)
    y, today = _national_year(year)
    page = data.load_national(scope, y, today)
    return _render(request, "national.html", user_name=name, scope_text=scope.describe(), page=page, region=None)


@app.get("/national/regions/{code}", response_class=HTMLResponse)
def national_region_page(request: Request, user: User, code: str, year: str | None = None):
    """The drill-down of a region: per establishment (FINESS_ordre) and month, the RPU received by ATIH next to
    the regional base; a reader sees its own establishments only."""
    name, scope = _who(user)
    region = _visible_region(code, scope)
    y, today = _national_year(year)
    page = data.load_national(scope, y, today, only=region)
    return _render(request, "national.html", user_name=name, scope_text=scope.describe(), page=page,
                   region=region)


def link(base: str, *parts: str) -> str:
    return base + "/" + "/".join(quote(p, safe="") for p in parts)


_env.globals.update(link=link)
