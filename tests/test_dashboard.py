"""The dashboard plugin, end to end: a real `airflow api-server` (FAB auth manager, SQLite metadata in a
throw-away AIRFLOW_HOME) serving plugins/, the regional databases on the real PostgreSQL of the test session,
and Debian's chromium driven by Playwright logging in through Airflow's own login page.

Users: `atih` (ATIH), `ars_demo` (ARS_demo), `ars_autre` (ARS_autre, a second region file), `lecteur_a`
(Lecteur_990000127), `sans_role` (Viewer only). Data: a few small files of 2025 with known counts (below); a
national database (rpu_national_db) that received three ATIH files; daily files of the second establishment of
`autre` from August to December 2025 (the daily chart and the watch's band), one day abnormally low.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from support.national_files import atih_file
from support.rpu_xml import rpu_file, visit

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "plugins"))   # the scope rules are plain Python: unit-tested here too

from rpu_dashboard.access import Scope, role_names

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SCREENSHOT = Path("/tmp/rpu-dashboard.png")
NATIONAL_SCREENSHOT = Path("/tmp/rpu-dashboard-national.png")
DAILY_SCREENSHOT = Path("/tmp/rpu-dashboard-daily.png")
YEAR = 2025
A, B, C = "990000127", "990000135", "990000143"       # CH de Valbourg, CH de Saint-Aurèle, Clinique du Parc
PASSWORD = "Mot-de-passe-" + uuid.uuid4().hex[:8]
USERS = {"atih": ["ATIH"], "ars_demo": ["ARS_demo"], "ars_autre": ["ARS_autre"], "lecteur_a": [f"Lecteur_{A}"],
         "sans_role": ["Viewer"]}
START_TIMEOUT = 180

# Expected transmissions grid (cumulative from 1 January; files by EXTRACT month, RPUs by entry month):
#   A: file 1 EXTRACT 02/02 (2 visits 31/01, 2 on 01/02); file 2 EXTRACT 02/03 (1 on 28/02, 2 on 01/03)
#   B: file EXTRACT 05/03 (5 visits on 04/03), then a malformed file (rejected, its last file)
EXPECTED = {  # finess → month → (files, rpus)
    A: {"2025-01": (0, 2), "2025-02": (1, 5), "2025-03": (2, 7), "2025-12": (2, 7)},
    B: {"2025-01": (0, 0), "2025-02": (0, 0), "2025-03": (1, 5), "2025-12": (1, 5)},
    C: {"2025-03": (0, 0)},
    "total": {"2025-01": (0, 2), "2025-02": (1, 5), "2025-03": (3, 12), "2025-12": (3, 12)},
}
# What ATIH received (national database): A's file of January–February (its ledger row, same content: conforme),
# B's of January–March with 5 RPU where the ledger says 4 (another content under that name: écart), and a file of
# autre's first establishment (3 RPU, no ledger row in that region).
NATIONAL = {("demo", 2): (1, 1, 5), ("demo", 3): (1, 1, 5), ("autre", 3): (1, 1, 3)}   # (files, establishments, rpu)
# Daily files of autre's second establishment: 20 + (ordinal % 5) visits a day from 1 August to 31 December,
# except ABNORMAL_DAY (2 visits: under μ − 3σ of its weekday)
DAILY_START, DAILY_END, ABNORMAL_DAY = "2025-08-01", "2025-12-31", "2025-12-10"


def daily_visits(day) -> int:
    return 2 if day.isoformat() == ABNORMAL_DAY else 20 + day.toordinal() % 5


# --- unit: the scope rules ---------------------------------------------------------------------------------

class _Region:
    def __init__(self, code, finesses):
        from rpu.config import Establishment

        self.code = code
        self.establishments = tuple(Establishment(f, f"E{f}") for f in finesses)


def test_scope_from_roles():
    demo, autre = _Region("demo", [A, B]), _Region("autre", ["980000016"])
    atih = Scope.from_roles(["ATIH"])
    assert atih.full_region(demo) and atih.full_region(autre)
    ars = Scope.from_roles(["ARS_demo", "Viewer"])
    assert ars.full_region(demo) and not ars.sees_region(autre)
    assert ars.sees_establishment(demo, B) and not ars.sees_establishment(autre, "980000016")
    lecteur = Scope.from_roles([f"Lecteur_{A}"])
    assert lecteur.sees_region(demo) and not lecteur.full_region(demo)
    assert [e.finess for e in lecteur.establishments_of(demo)] == [A]
    assert not lecteur.sees_establishment(demo, B) and not lecteur.sees_region(autre)
    nobody = Scope.from_roles(["Viewer", "User", "Op", ""])
    assert not nobody.sees_region(demo) and not nobody.everything
    assert Scope.from_roles(["Admin"]).everything


def test_role_names_of_fab_and_simple_users():
    class Role:
        def __init__(self, name):
            self.name = name

    class FabUser:
        roles = (Role("ARS_demo"), Role("Viewer"))

    class SimpleUser:
        role = "admin"

    assert role_names(FabUser()) == ["ARS_demo", "Viewer"]
    assert role_names(SimpleUser()) == ["Admin"]
    assert role_names(object()) == []


def test_desired_roles():
    from rpu import roles
    from rpu.config import get_region

    demo = get_region("demo")
    wanted = roles.desired_roles([demo], [("can_read", "DAGs")],
                                 dags_of=lambda r: roles.RegionDags([f"{r.code}_intake", f"{r.code}_reprise"],
                                                                    {f"{r.code}_reprise": f"ARS_{r.code}"}))
    assert ("can_read", "DAGs") in wanted["ATIH"] and ("can_read", "Plugins") in wanted["ATIH"]
    ars = wanted["ARS_demo"]
    assert ("can_read", "DAG:demo_intake") in ars and ("can_read", "DAGs") not in ars
    assert {p for p in ars if p[1].endswith("demo_reprise")} == roles.trigger_permissions("demo_reprise")
    assert wanted[f"Lecteur_{A}"] == set(roles.PERSONAL)
    assert len([r for r in wanted if r.startswith("Lecteur_")]) == len(demo.establishments)


# --- the running dashboard ---------------------------------------------------------------------------------

def _free_port() -> int:
    from rpu_dev.localservices import free_port

    return free_port()


def _pg_conn(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    ci = conninfo_to_dict(url)
    return json.dumps({"conn_type": "postgres", "host": ci["host"], "port": int(ci["port"]), "login": ci["user"],
                       "schema": ci["dbname"]})


def _http(method: str, url: str, *, body=None, token=None, accept="application/json", cookie=None,
          follow=False) -> tuple[int, dict, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Accept": accept})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if cookie:
        req.add_header("Cookie", cookie)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(*([] if follow else [NoRedirect()]))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")


class Dashboard:
    """Everything started for these tests; `stop()` ends each process it started, on every path."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {}
        self.server: subprocess.Popen | None = None
        self.log = workdir / "api-server.log"
        self.regions_dir = workdir / "regions"
        self.db_urls: dict[str, str] = {}

    def run(self, *argv: str, timeout: float = 300) -> str:
        r = subprocess.run(list(argv), env=self.env, cwd=self.workdir, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r.stdout

    def airflow(self, *args: str, timeout: float = 300) -> str:
        return self.run(str(Path(sys.executable).parent / "airflow"), *args, timeout=timeout)

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.server = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server"],
                                           env=self.env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"api-server exited ({self.server.returncode}):\n{self.log_tail()}")
            try:
                status, _, _ = _http("GET", f"{self.url}/api/v2/monitor/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"api-server not up after {START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.server is None:
            return
        pgid = self.server.pid        # start_new_session: the server leads its own process group
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.server.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; make sure no worker of its group survives
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
        self.server = None

    def token(self, user: str) -> str:
        status, _, body = _http("POST", f"{self.url}/auth/token", body={"username": user, "password": PASSWORD})
        assert status in (200, 201), (status, body)
        return json.loads(body)["access_token"]


def _write_regions(directory: Path, data_dir: Path) -> None:
    from rpu.config import finess_with_key

    directory.mkdir(parents=True)
    demo = yaml.safe_load((PROJECT / "config" / "regions" / "demo.yaml").read_text(encoding="utf-8"))
    demo["archive_dir"] = str(data_dir / "archive" / "demo")
    demo["outbox_dir"] = str(data_dir / "outbox" / "demo")
    (directory / "demo.yaml").write_text(yaml.safe_dump(demo, allow_unicode=True), encoding="utf-8")
    autre = {"code": "autre", "name": "Autre région", "timezone": "Europe/Paris",
             "alerts": {"ars": ["veille@ars-autre.example.org"]},
             "archive_dir": str(data_dir / "archive" / "autre"), "outbox_dir": str(data_dir / "outbox" / "autre"),
             "establishments": [{"finess": finess_with_key("98000001"), "name": "CH d'Ailleurs"},
                                {"finess": finess_with_key("98000002"), "name": "Clinique Lointaine"}]}
    (directory / "autre.yaml").write_text(yaml.safe_dump(autre, allow_unicode=True), encoding="utf-8")


def _seed(pg_server, dash: Dashboard, files_dir: Path) -> None:
    import psycopg
    from rpu import intake, store
    from rpu.config import load_region

    for code in ("demo", "autre"):
        url = pg_server.create_database(f"dash_{code}_{uuid.uuid4().hex[:8]}")
        store.migrate(url)
        dash.db_urls[code] = url
    demo, autre = load_region(dash.regions_dir / "demo.yaml"), load_region(dash.regions_dir / "autre.yaml")
    files_dir.mkdir()

    def ingest(region, name, data, sender, status):
        path = files_dir / name
        path.write_bytes(data)
        r = intake.ingest_path(region, dash.db_urls[region.code], path, sender=sender)
        assert r["status"] == status, r

    ingest(demo, "a1.xml", rpu_file(
        [visit(ENTREE="31/01/2025 10:00", SORTIE="31/01/2025 12:00")] * 2
        + [visit(ENTREE="01/02/2025 09:00", SORTIE="01/02/2025 11:00")] * 2,
        finess=A, extract="02/02/2025 03:10:00", debut="26/01/2025", fin="01/02/2025"), A, "accepted")
    ingest(demo, "a2.xml", rpu_file(
        [visit(ENTREE="28/02/2025 10:00", SORTIE="28/02/2025 12:00")]
        + [visit(ENTREE="01/03/2025 09:00", SORTIE="01/03/2025 11:00")] * 2,
        finess=A, extract="02/03/2025 03:10:00", debut="23/02/2025", fin="01/03/2025"), A, "accepted")
    ingest(demo, "b1.xml", rpu_file(
        [visit(ENTREE="04/03/2025 08:00", SORTIE="04/03/2025 09:30")] * 5,
        finess=B, extract="05/03/2025 03:10:00", debut="28/02/2025", fin="04/03/2025"), B, "accepted")
    ingest(demo, "b2-malformed.xml", b"<OSCOUR><ETABLISSEMENT><FINESS>", B, "rejected")
    ingest(autre, "x1.xml", rpu_file(
        [visit(ENTREE="10/03/2025 08:00", SORTIE="10/03/2025 09:30")] * 3,
        finess=autre.establishments[0].finess, extract="11/03/2025 03:10:00", debut="10/03/2025",
        fin="10/03/2025"), autre.establishments[0].finess, "accepted")

    with psycopg.connect(dash.db_urls["demo"], autocommit=True) as conn:
        ledger = """INSERT INTO send_ledger (recipient, kind, etab, period_start, period_end, run_id, file_name,
                        sha256, size_bytes, visits, local_path, status, attempts, sent_at)
                    VALUES ('atih', 'cumulative', %s, %s, %s, 'scheduled__test', %s, repeat('0', 64), 100, %s,
                            '/nonexistent', 'sent', 1, now())"""
        conn.execute(ledger, (A, "2025-01-01", "2025-02-28", f"atih_{A}_2025-02.xml", 5))        # = stored: ✓
        conn.execute(ledger, (B, "2025-01-01", "2025-03-31", f"atih_{B}_2025-03.xml", 4))        # 5 stored: ✗
        conn.execute("""INSERT INTO alert (region, kind, etab, key, state, first_seen, last_seen, details)
                        VALUES ('demo', 'missing', %s, '2025-03-06', 'open', now() - interval '3 days', now(),
                                %s::jsonb)""",
                     (B, json.dumps({"etab": B, "name": "CH de Saint-Aurèle", "days": 3, "gap_start": "2025-03-06",
                                     "last_accepted": "2025-03-05T03:10:00+01:00", "reprise_needed": False,
                                     "lost_since": None, "catch_up_until": "2025-03-12"})))


def _seed_daily(dash: Dashboard, files_dir: Path) -> None:
    """Weekly files (7 entry days each) of autre's second establishment, August to December 2025."""
    from datetime import date, timedelta

    from rpu import intake
    from rpu.config import load_region

    autre = load_region(dash.regions_dir / "autre.yaml")
    finess = autre.establishments[1].finess
    day, end = date.fromisoformat(DAILY_START), date.fromisoformat(DAILY_END)
    while day <= end:
        last = min(day + timedelta(days=6), end)
        visits = [visit(ENTREE=f"{d:%d/%m/%Y} 10:00", SORTIE=f"{d:%d/%m/%Y} 12:00")
                  for k in range((last - day).days + 1) for d in [day + timedelta(days=k)] for _ in range(daily_visits(d))]
        path = files_dir / f"daily-{day:%Y%m%d}.xml"
        path.write_bytes(rpu_file(visits, finess=finess, debut=f"{day:%d/%m/%Y}", fin=f"{last:%d/%m/%Y}",
                                  extract=f"{last + timedelta(days=1):%d/%m/%Y} 03:10:00"))
        r = intake.ingest_path(autre, dash.db_urls["autre"], path, sender=finess)
        assert r["status"] == "accepted", r
        day = last + timedelta(days=1)


def _seed_national(pg_server, dash: Dashboard, files_dir: Path) -> None:
    """The national database: what ATIH received (NATIONAL), and the demo ledger's ATIH sends set to match it."""
    import psycopg
    from rpu.config import load_region
    from rpu.national import reception, schema, settings

    url = pg_server.create_database(f"dash_national_{uuid.uuid4().hex[:8]}")
    schema.migrate(url)
    dash.db_urls["national"] = url
    demo, autre = load_region(dash.regions_dir / "demo.yaml"), load_region(dash.regions_dir / "autre.yaml")
    a_file = atih_file({1: 2, 2: 3}, year=YEAR, finess=A, fin="28/02/2025", extract="01/03/2025 06:00:00")
    b_file = atih_file({3: 5}, year=YEAR, finess=B, extract="01/04/2025 06:00:00")
    x_file = atih_file({3: 3}, year=YEAR, finess=autre.establishments[0].finess, extract="01/04/2025 06:00:00")
    with psycopg.connect(dash.db_urls["demo"], autocommit=True) as conn:
        conn.execute("UPDATE send_ledger SET sha256 = %s WHERE file_name = %s",
                     (hashlib.sha256(a_file).hexdigest(), f"atih_{A}_2025-02.xml"))
        conn.execute("UPDATE send_ledger SET sent_at = now() - interval '1 hour' WHERE file_name = %s",
                     (f"atih_{B}_2025-03.xml",))
    for region, name, data in ((demo, f"atih_{A}_2025-02.xml", a_file), (demo, f"atih_{B}_2025-03.xml", b_file),
                               (autre, "atih_x_2025-03.xml", x_file)):
        path = files_dir / name
        path.write_bytes(data)
        r = reception.receive_path(settings.National(), region, url, path)
        assert r["status"] == "accepted", r


@pytest.fixture(scope="module")
def dash(pg_server):
    from cryptography.fernet import Fernet

    workdir = Path(tempfile.mkdtemp(prefix="rpu-test-dashboard-"))
    d = Dashboard(workdir)
    try:
        _write_regions(d.regions_dir, workdir / "data")
        _seed(pg_server, d, workdir / "files")
        _seed_national(pg_server, d, workdir / "files")
        _seed_daily(d, workdir / "files")
        home = workdir / "airflow"
        home.mkdir()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RPU_", "PG"))}
        d.env = inherited | {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(d.port),
            "AIRFLOW__API__BASE_URL": d.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__FAB__AUTH_RATE_LIMITED": "False",    # several logins in a few seconds from one address
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "RPU_REGIONS_DIR": str(d.regions_dir),
            "RPU_DATA_DIR": str(workdir / "data"),
            "AIRFLOW_CONN_RPU_DEMO_DB": _pg_conn(d.db_urls["demo"]),
            "AIRFLOW_CONN_RPU_AUTRE_DB": _pg_conn(d.db_urls["autre"]),
            "AIRFLOW_CONN_RPU_NATIONAL_DB": _pg_conn(d.db_urls["national"]),
        }
        d.airflow("db", "migrate")
        out = d.run(sys.executable, "-m", "rpu.cli", "roles", "sync")
        assert "2 region(s)" in out and "ARS_autre: created" in out, out
        d.run(sys.executable, "-c", f"""
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
users = {USERS!r}
with get_application_builder() as ab:
    for name, roles in users.items():
        assert ab.sm.add_user(name, name, "Test", name + "@test.invalid", [ab.sm.find_role(r) for r in roles],
                              {PASSWORD!r}), name
""")
        # parse the DAGs into the metadata database (what the dag-processor does)
        d.airflow("dags", "reserialize")
        # the sync is idempotent: parsing the DAGs changed none of its permissions
        out = d.run(sys.executable, "-m", "rpu.cli", "roles", "sync")
        assert "0 role(s) created, 0 permission(s) added, 0 removed" in out, out
        d.start()
        yield d
    finally:
        d.stop()
        for url in d.db_urls.values():
            pg_server.drop_database(url.rsplit("/", 1)[1])
        if os.environ.get("RPU_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(dash):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/setup (Debian package chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def login(browser, dash: Dashboard, user: str):
    """A fresh browser context (own cookies) logged in through Airflow's login page, on the dashboard index."""
    context = browser.new_context(locale="fr-FR", viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.goto(f"{dash.url}/rpu/")
    assert "/auth/login/" in page.url, page.url        # sent to the login page, then back
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    assert page.url.rstrip("/") == f"{dash.url}/rpu", (page.url, page.content()[:2000])
    return context, page


def cell(page, row: str, month: str) -> tuple[int, int, str]:
    td = page.locator(f"#transmissions tr[data-finess='{row}'] td[data-month='{month}']")
    return int(td.get_attribute("data-files")), int(td.get_attribute("data-rpus")), td.inner_text()


# (/rpu without its slash is not the plugin's: Airflow's UI shell answers it, with no data)
ROUTES = ["/rpu/", "/rpu/regions/demo", f"/rpu/regions/demo?year={YEAR}", "/rpu/regions/autre",
          f"/rpu/regions/demo/establishments/{A}", f"/rpu/regions/demo/establishments/{B}?year={YEAR}",
          "/rpu/regions/inconnue", "/rpu/national", f"/rpu/national?year={YEAR}", "/rpu/national/regions/demo",
          "/rpu/docs", "/rpu/openapi.json", "/rpu/redoc"]
SECRETS = ("Valbourg", "Saint-Aur", A, B, "atih_", "rejet")


@pytest.mark.slow
def test_anonymous_requests_are_refused(dash):
    for route in ROUTES:
        for accept in ("text/html", "application/json", "*/*"):
            for cookie in (None, "_token=not-a-jwt", "_token=eyJhbGciOiJIUzUxMiJ9.e30.x"):
                status, headers, body = _http("GET", dash.url + route, accept=accept, cookie=cookie)
                where = f"{route} ({accept}, cookie {cookie})"
                assert status in (303, 307, 401, 403, 404), where
                if status in (303, 307):
                    loc = headers.get("location") or headers.get("Location") or ""
                    assert "/auth/login/" in loc or loc.endswith("/rpu/"), (where, loc)
                assert not any(s in body for s in SECRETS), (where, body[:500])
        # a browser-like request is sent to the login page, with the way back
        status, headers, _ = _http("GET", dash.url + route, accept="text/html")
        if route not in ("/rpu/docs", "/rpu/openapi.json", "/rpu/redoc"):
            assert status == 303, route
            assert "/auth/login/?next=" in headers.get("location", headers.get("Location", "")), route
    # no documentation or schema of the app is served at all
    for route in ("/rpu/docs", "/rpu/openapi.json", "/rpu/redoc"):
        assert _http("GET", dash.url + route, token=dash.token("atih"))[0] == 404


@pytest.mark.slow
def test_region_page_shows_the_counts(dash, browser):
    context, page = login(browser, dash, "ars_demo")
    try:
        assert page.locator("#regions li").count() == 1
        page.click("#regions li[data-region='demo'] a")
        page.wait_for_load_state()
        page.goto(f"{dash.url}/rpu/regions/demo?year={YEAR}")
        assert page.locator("#year").inner_text() == str(YEAR)
        for row, months in EXPECTED.items():
            for month, (files, rpus) in months.items():
                f, r, text = cell(page, row, month)
                assert (f, r) == (files, rpus), (row, month, f, r)
                assert f"{files} | {rpus}" in text, (row, month, text)
        # every configured establishment has its row, then the total
        rows = page.locator("#transmissions tbody tr").evaluate_all("els => els.map(e => e.dataset.finess)")
        assert rows[-1] == "total" and len(rows) == 12 + 1
        # ATIH ledger figures and their match marks
        feb_a = page.locator(f"#transmissions tr[data-finess='{A}'] td[data-month='2025-02']")
        assert feb_a.get_attribute("data-atih") == "5" and feb_a.get_attribute("data-match") == "yes"
        assert "ATIH 5 ✓" in feb_a.inner_text()
        mar_b = page.locator(f"#transmissions tr[data-finess='{B}'] td[data-month='2025-03']")
        assert mar_b.get_attribute("data-atih") == "4" and mar_b.get_attribute("data-match") == "no"
        assert "ATIH 4 ✗ (5)" in mar_b.inner_text()
        mar_total = page.locator("#transmissions tr[data-finess='total'] td[data-month='2025-03']")
        assert mar_total.get_attribute("data-match") == "no"
        # last file and status: B's last file is the rejected one
        assert page.locator(f"#status tr[data-finess='{B}'] td[data-status]").get_attribute("data-status") == "rejected"
        assert "b2-malformed.xml" in page.locator(f"#status tr[data-finess='{B}']").inner_text()
        assert page.locator(f"#status tr[data-finess='{A}'] td[data-status]").get_attribute("data-status") == "accepted"
        # open alerts, quality, ledger
        assert page.locator("#alerts tbody tr").count() == 1
        assert "Pas de transmission depuis le 06/03/2025" in page.locator(f"#alerts tr[data-finess='{B}']").inner_text()
        assert page.locator(f"#quality td[data-finess='{A}'][data-visits]").inner_text() == "7"
        assert page.locator("#quality td[data-finess='total'][data-visits]").inner_text() == "12"
        assert page.locator("#ledger tbody tr").count() == 2
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        context.close()


@pytest.mark.slow
def test_atih_sees_every_region(dash, browser):
    context, page = login(browser, dash, "atih")
    try:
        codes = page.locator("#regions li").evaluate_all("els => els.map(e => e.dataset.region)")
        assert sorted(codes) == ["autre", "demo"]
        page.goto(f"{dash.url}/rpu/regions/autre?year={YEAR}")
        assert page.locator("#transmissions tr[data-finess='total'] td[data-month='2025-03']"
                            ).get_attribute("data-rpus") == "3"
        response = page.goto(f"{dash.url}/rpu/regions/inconnue")
        assert response.status == 404
    finally:
        context.close()


@pytest.mark.slow
def test_lecteur_sees_only_its_establishment(dash, browser):
    context, page = login(browser, dash, "lecteur_a")
    try:
        links = page.locator("#regions a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert f"/rpu/regions/demo/establishments/{A}" in links
        assert not any(B in link for link in links)
        # its own page
        response = page.goto(f"{dash.url}/rpu/regions/demo/establishments/{A}?year={YEAR}")
        assert response.status == 200
        assert cell(page, A, "2025-03")[:2] == (2, 7)
        assert page.locator("#ledger tbody tr").count() == 1
        # another establishment: refused, nothing of it shown
        for url in (f"/rpu/regions/demo/establishments/{B}?year={YEAR}", f"/rpu/regions/demo/establishments/{C}",
                    "/rpu/regions/demo/establishments/999999999", "/rpu/regions/autre"):
            response = page.goto(dash.url + url)
            assert response.status == 403, url
            text = page.content()
            assert "Saint-Aur" not in text and "b2-malformed" not in text and "Accès refusé" in text, url
        # the region page: its own rows only, no region total, no other establishment
        response = page.goto(f"{dash.url}/rpu/regions/demo?year={YEAR}")
        assert response.status == 200
        rows = page.locator("#transmissions tbody tr").evaluate_all("els => els.map(e => e.dataset.finess)")
        assert rows == [A]
        assert page.locator("#status tbody tr").evaluate_all("els => els.map(e => e.dataset.finess)") == [A]
        assert page.locator("#quality thead th[data-finess]").evaluate_all(
            "els => els.map(e => e.dataset.finess)") == [A]
        assert page.locator("#alerts-none").count() == 1           # B's alert is not shown
        assert page.locator("#ledger tbody tr").evaluate_all("els => els.map(e => e.dataset.finess)") == [A]
        text = page.content()
        for other in (B, C, "Saint-Aur", "b2-malformed", "Total région", "Région</th>"):
            assert other not in text, other
    finally:
        context.close()


@pytest.mark.slow
def test_other_region_ars_cannot_see_the_demo_region(dash, browser):
    context, page = login(browser, dash, "ars_autre")
    try:
        assert page.locator("#regions li").evaluate_all("els => els.map(e => e.dataset.region)") == ["autre"]
        for url in (f"/rpu/regions/demo?year={YEAR}", f"/rpu/regions/demo/establishments/{A}"):
            response = page.goto(dash.url + url)
            assert response.status == 403, url
            assert "Valbourg" not in page.content() and A not in page.content()
        response = page.goto(f"{dash.url}/rpu/regions/autre?year={YEAR}")
        assert response.status == 200
    finally:
        context.close()
    # a user without any dashboard role: an empty index, 403 everywhere else
    context, page = login(browser, dash, "sans_role")
    try:
        assert page.locator("#no-scope").count() == 1
        assert page.goto(f"{dash.url}/rpu/regions/demo").status == 403
    finally:
        context.close()


@pytest.mark.slow
def test_ars_may_trigger_its_own_reprise_only(dash):
    conf = {"establishment": A, "start_date": "2025-02-01", "end_date": "2025-02-28", "recipients": ["invs"],
            "dry_run": True}
    ars = dash.token("ars_demo")
    status, _, body = _http("POST", f"{dash.url}/api/v2/dags/demo_reprise/dagRuns", token=ars,
                            body={"logical_date": None, "conf": conf})
    assert status == 200, body
    status, _, body = _http("POST", f"{dash.url}/api/v2/dags/autre_reprise/dagRuns", token=ars,
                            body={"logical_date": None, "conf": conf | {"establishment": "980000016"}})
    assert status == 403, body
    # nor any other DAG of its region (read only), and the other ARS not this one
    assert _http("POST", f"{dash.url}/api/v2/dags/demo_intake/dagRuns", token=ars,
                 body={"logical_date": None})[0] == 403
    assert _http("POST", f"{dash.url}/api/v2/dags/demo_reprise/dagRuns", token=dash.token("ars_autre"),
                 body={"logical_date": None, "conf": conf})[0] == 403
    assert _http("POST", f"{dash.url}/api/v2/dags/demo_reprise/dagRuns", token=dash.token("lecteur_a"),
                 body={"logical_date": None, "conf": conf})[0] == 403
    # what the ARS sees in Airflow: its region's DAGs only; the dashboard's menu entry
    status, _, body = _http("GET", f"{dash.url}/api/v2/dags?limit=100", token=ars)
    assert status == 200
    ids = sorted(d["dag_id"] for d in json.loads(body)["dags"])
    assert ids and all(i.startswith("demo_") for i in ids) and "demo_reprise" in ids, ids
    for user in ("ars_demo", "lecteur_a", "atih"):
        status, _, body = _http("GET", f"{dash.url}/api/v2/plugins", token=dash.token(user))
        assert status == 200, (user, body)
        views = [v for p in json.loads(body)["plugins"] for v in p["external_views"]]
        assert any(v["href"].endswith("/rpu/") and v["url_route"] == "rpu-dashboard" for v in views), views


@pytest.mark.slow
def test_only_atih_may_trigger_a_release(dash):
    """The `<code>_release` DAG (quarantine release): ATIH operations trigger it (the run records who), the ARS of
    the region reads it but may not trigger it, nor may a reader."""
    conf = {"file_id": 1, "reason": "faux positif du contrôle qualité"}
    for user in ("ars_demo", "lecteur_a", "sans_role"):
        assert _http("POST", f"{dash.url}/api/v2/dags/demo_release/dagRuns", token=dash.token(user),
                     body={"logical_date": None, "conf": conf})[0] == 403, user
    assert _http("GET", f"{dash.url}/api/v2/dags/demo_release", token=dash.token("ars_demo"))[0] == 200
    status, _, body = _http("POST", f"{dash.url}/api/v2/dags/demo_release/dagRuns", token=dash.token("atih"),
                            body={"logical_date": None, "conf": conf})
    assert status == 200, body
    assert json.loads(body)["triggering_user_name"] == "atih"
    assert _http("POST", f"{dash.url}/api/v2/dags/demo_reprise/dagRuns", token=dash.token("atih"),
                 body={"logical_date": None, "conf": {}})[0] == 403     # ATIH triggers releases, not reprises


# --- the ATIH side: national page, reconciliation, readers, charts ------------------------------------------

def national_cells(page, selector: str = "#national") -> dict:
    """(region, month) → (files, establishments, rpu) of the national grid shown ("total" for Total général)."""
    return {(c["region"], int(c["month"])): (int(c["files"]), int(c["establishments"]), int(c["rpu"]))
            for c in page.locator(f"{selector} tbody td[data-month]").evaluate_all(
                "els => els.map(e => ({region: e.parentElement.dataset.region, month: e.dataset.month, "
                "files: e.dataset.files, establishments: e.dataset.establishments, rpu: e.dataset.rpu}))")}


def cli_national(dash: Dashboard) -> dict:
    out = dash.run(str(Path(sys.executable).parent / "rpu"), "report", "national", "--db", dash.db_urls["national"],
                   "--year", str(YEAR), "--format", "json")
    return json.loads(out)


@pytest.mark.slow
def test_national_page_equals_the_cli_json(dash, browser):
    report = cli_national(dash)
    expected = {(r["region"], r["month"]): (r["files"], r["establishments"], r["rpu"]) for r in report["rows"]}
    expected |= {("total", t["month"]): (t["files"], t["establishments"], t["rpu"]) for t in report["total"]}
    # the CLI's figures are the ones seeded (so the comparison below cannot pass on two empty grids)
    assert {k: v for k, v in expected.items() if v != (0, 0, 0) and k[0] != "total"} == NATIONAL
    assert expected[("total", 3)] == (2, 2, 8)
    context, page = login(browser, dash, "atih")
    try:
        page.click("#national-link a")
        page.wait_for_load_state()
        page.goto(f"{dash.url}/rpu/national?year={YEAR}")
        assert national_cells(page) == expected
        assert page.locator("#national tbody tr").evaluate_all("els => els.map(e => e.dataset.region)") == [
            r["region"] for r in report["regions"]] + ["total"]
        assert "Total général" in page.locator("#national tr[data-region='total']").inner_text()
        # the reconciliation cells: words and a symbol, not a colour
        rec = {(c["region"], int(c["month"])): c["status"] for c in page.locator(
            "#national tbody tr[data-region] td[data-reconciliation]").evaluate_all(
            "els => els.map(e => ({region: e.parentElement.dataset.region, month: e.dataset.month, "
            "status: e.dataset.reconciliation}))") if c["status"]}
        assert rec == {("demo", 2): "conforme", ("demo", 3): "ecart"}
        assert "✓ reçu, conforme" in page.locator("#national tr[data-region='demo'] td[data-month='2']").inner_text()
        assert "≠ écart" in page.locator("#national tr[data-region='demo'] td[data-month='3']").inner_text()
        # the bars: one per region and month, labelled, their values those of the table
        chart = page.locator("#national-chart svg")
        assert chart.count() == 1 and chart.get_attribute("role") == "img"
        assert "RPU reçus par l'ATIH" in chart.locator("title").first.text_content()
        bars = {(b["region"], int(b["month"])): int(b["rpu"]) for b in chart.locator("rect.bar").evaluate_all(
            "els => els.map(e => ({region: e.dataset.region, month: e.dataset.month, rpu: e.dataset.rpu}))")}
        assert bars == {k: v[2] for k, v in expected.items() if k[0] != "total"}
        tip = chart.locator("rect.bar[data-region='demo'][data-month='3'] title").text_content()
        assert "M3 : 5 RPU, 1 fichier(s)" in tip, tip
        page.screenshot(path=str(NATIONAL_SCREENSHOT), full_page=True)
        # drill-down: per establishment, ATIH next to the regional base
        page.goto(f"{dash.url}/rpu/national/regions/demo?year={YEAR}")
        atih_a = page.locator(f"#establishments tr[data-finess='{A}'][data-source='atih']")
        assert atih_a.locator("td[data-month='2']").get_attribute("data-rpu") == "5"
        base_a = page.locator(f"#establishments tr[data-finess='{A}'][data-source='base']")
        assert base_a.locator("td[data-month='2']").get_attribute("data-rpu") == "5"     # EXPECTED[A]["2025-02"]
        assert page.locator(f"#establishments tr[data-finess='{C}'][data-source='atih']").inner_text().count(
            "aucun fichier reçu") == 1
        assert page.locator("table.reconciliation tbody tr").evaluate_all(
            "els => els.map(e => [e.dataset.finess, e.dataset.status])") == [[A, "conforme"], [B, "ecart"]]
    finally:
        context.close()


@pytest.mark.slow
def test_national_page_scoping(dash, browser):
    # an ARS: its region's row, its total; nothing of the other region
    context, page = login(browser, dash, "ars_demo")
    try:
        page.goto(f"{dash.url}/rpu/national?year={YEAR}")
        cells = national_cells(page)
        assert {r for r, _ in cells} == {"demo", "total"}
        assert all(cells[("total", m)] == cells[("demo", m)] for m in range(1, 13))
        assert "Autre région" not in page.content() and "CH d'Ailleurs" not in page.content()
        assert page.goto(f"{dash.url}/rpu/national/regions/autre").status == 403
        assert page.goto(f"{dash.url}/rpu/national/regions/demo?year={YEAR}").status == 200
        # the region page: the reconciliation months and files
        page.goto(f"{dash.url}/rpu/regions/demo?year={YEAR}")
        months = page.locator("table.reconciliation-months td[data-month]").evaluate_all(
            "els => Object.fromEntries(els.map(e => [e.dataset.month, e.dataset.status]))")
        assert {m: s for m, s in months.items() if s} == {"2": "conforme", "3": "ecart"}
        assert "≠ écart" in page.locator(f"table.reconciliation tr[data-finess='{B}']").inner_text()
    finally:
        context.close()
    # a reader: its own establishment's lines, ATIH next to the regional base; no grid, no other establishment
    context, page = login(browser, dash, "lecteur_a")
    try:
        page.click("#national-link a")
        page.wait_for_load_state()
        assert page.url.endswith("/rpu/national"), page.url
        page.goto(f"{dash.url}/rpu/national?year={YEAR}")
        assert page.locator("#national").count() == 0 and page.locator("#national-chart").count() == 0
        assert page.locator("#establishments tbody tr").evaluate_all(
            "els => els.map(e => [e.dataset.finess, e.dataset.source])") == [[A, "atih"], [A, "base"]]
        atih = page.locator(f"#establishments tr[data-finess='{A}'][data-source='atih'] td[data-month]").evaluate_all(
            "els => els.map(e => e.dataset.rpu)")
        base = page.locator(f"#establishments tr[data-finess='{A}'][data-source='base'] td[data-month]").evaluate_all(
            "els => els.map(e => e.dataset.rpu)")
        assert atih == ["", "5"] + [""] * 10
        assert base[:3] == [str(EXPECTED[A]["2025-01"][1]), str(EXPECTED[A]["2025-02"][1]),
                            str(EXPECTED[A]["2025-03"][1])]
        assert page.locator("table.reconciliation tbody tr").evaluate_all(
            "els => els.map(e => [e.dataset.finess, e.dataset.status])") == [[A, "conforme"]]
        text = page.content()
        for other in (B, C, "Saint-Aur", "Autre région", "Total général", f"atih_{B}"):
            assert other not in text, other
        for url in ("/rpu/national/regions/autre", "/rpu/national?year=20x5"):
            assert page.goto(dash.url + url).status in (400, 403), url
        page.goto(f"{dash.url}/rpu/national/regions/demo?year={YEAR}")
        assert page.locator("#establishments tbody tr").evaluate_all(
            "els => els.map(e => e.dataset.finess)") == [A, A]
        assert B not in page.content()
        # its establishment page: its reconciliation only
        page.goto(f"{dash.url}/rpu/regions/demo/establishments/{A}?year={YEAR}")
        assert page.locator("table.reconciliation tbody tr").evaluate_all(
            "els => els.map(e => e.dataset.finess)") == [A]
    finally:
        context.close()
    # no dashboard role: nothing
    context, page = login(browser, dash, "sans_role")
    try:
        page.goto(f"{dash.url}/rpu/national?year={YEAR}")
        assert page.locator("#no-scope").count() == 1 and page.locator("#national").count() == 0
    finally:
        context.close()


def _expected_band(day):
    """The watch's own μ − 3σ for a seeded day (rpu.watch.rules.baseline over the same weekday's previous weeks)."""
    from datetime import date, timedelta

    from rpu.watch import rules

    start = date.fromisoformat(DAILY_START)
    history = [daily_visits(h) for k in range(1, 9) if (h := day - timedelta(weeks=k)) >= start]
    return rules.baseline(history)


@pytest.mark.slow
def test_daily_chart_with_the_watch_band(dash, browser):
    from datetime import date

    from rpu.config import load_region

    autre = load_region(dash.regions_dir / "autre.yaml")
    x1, x2 = autre.establishments[0].finess, autre.establishments[1].finess
    context, page = login(browser, dash, "ars_autre")
    try:
        for url in (f"/rpu/regions/autre?year={YEAR}", f"/rpu/regions/autre/establishments/{x2}?year={YEAR}"):
            page.goto(dash.url + url)
            chart = page.locator(f"svg.chart.daily[data-finess='{x2}']")
            assert chart.count() == 1, url
            assert chart.get_attribute("role") == "img"
            labelled = chart.get_attribute("aria-labelledby").split()
            assert "Passages quotidiens" in page.locator(f"[id='{labelled[0]}']").text_content()
            assert "μ ± 3σ" in page.locator(f"[id='{labelled[1]}']").text_content()
            points = chart.locator("[data-day]").evaluate_all(
                "els => els.map(e => [e.dataset.day, e.dataset.visits, e.dataset.abnormal])")
            # 90 days to 31 December, every one received, their values those of the table under the chart
            assert len(points) == 90 and points[0][0] == "2025-10-03" and points[-1][0] == "2025-12-31"
            assert all(int(v) == daily_visits(date.fromisoformat(d)) for d, v, _ in points)
            table = page.locator(f"table.daily-values[data-finess='{x2}'] tbody tr").evaluate_all(
                "els => els.map(e => [e.dataset.day, e.dataset.visits])")
            assert table == [[d, v] for d, v, _ in points]
            # the abnormal day, marked by a shape and words; the band is the watch's
            assert [d for d, _, a in points if a == "yes"] == [ABNORMAL_DAY]
            marker = chart.locator(f"path.abnormal[data-day='{ABNORMAL_DAY}'] title").text_content()
            base = _expected_band(date.fromisoformat(ABNORMAL_DAY))
            assert "journée anormale" in marker and f"{base.threshold:.1f}".replace(".", ",") in marker, marker
            row = page.locator(f"table.daily-values tr[data-day='{ABNORMAL_DAY}']").text_content()   # in <details>
            assert "sous le seuil" in row and f"{base.threshold:.1f}".replace(".", ",") in row, row
            assert chart.locator("polygon.band").count() >= 1 and chart.locator("polyline.mean").count() >= 1
        chart.screenshot(path=str(DAILY_SCREENSHOT))
        page.goto(f"{dash.url}/rpu/regions/autre?year={YEAR}")
        assert "aucune donnée reçue" in page.locator(f"svg.chart.daily[data-finess='{x1}']").text_content()
    finally:
        context.close()
