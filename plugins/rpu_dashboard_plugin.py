"""Airflow plugin: the RPU dashboard (plugins/rpu_dashboard), mounted by the api-server under /rpu, with an
entry in the Airflow UI's navigation that shows it inside the UI.

Every page needs an authenticated Airflow user and shows only what the user's roles allow (docs/dashboard.md).
The package itself is listed in plugins/.airflowignore: Airflow imports every .py file of the plugins folder
as a top-level module, and only this file is a plugin.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin
from rpu_dashboard.app import PREFIX, app

_ROOT = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class RpuDashboardPlugin(AirflowPlugin):
    name = "rpu_dashboard"
    # (lists, as Airflow's plugin manager expects them)
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Tableau de bord RPU"}]  # noqa: RUF012
    # with a url_route, the UI shows the page in its own frame at /plugin/rpu-dashboard (same origin: the login
    # cookie goes with it); the menu entry needs "can_read on Plugins", which `rpu roles sync` gives
    external_views = [  # noqa: RUF012
        {"name": "Suivi RPU", "href": f"{_ROOT}{PREFIX}/", "destination": "nav", "url_route": "rpu-dashboard"}]
