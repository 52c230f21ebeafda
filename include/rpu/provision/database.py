"""The region's PostgreSQL database and least-privilege role, the schema applied by the admin (rpu.store.migrate);
the role's password sent only as a SCRAM-SHA-256 verifier."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from rpu import store
from rpu.provision.errors import ServiceError

ENV_ADMIN_DB = "RPU_ADMIN_DB"
SCRAM_ITERATIONS = 4096   # PostgreSQL's default scram_iterations


# --- PostgreSQL ---------------------------------------------------------------------------------------------

def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as libpq's
    PQencryptPasswordConn computes it): only this is sent to the server."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def new_password() -> str:
    return secrets.token_urlsafe(24)     # 192 random bits, URL-safe: no quoting needed anywhere


def _conninfo(url: str, **override) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, **override)


def _conn_params(url: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(url)


def check_admin_url(url: str) -> str | None:
    try:
        _conn_params(url)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError: not a conninfo/URL
        return f"--admin-db: not a PostgreSQL URL or conninfo ({str(exc).strip()})"
    return None


def _where(url: str) -> str:
    p = _conn_params(url)
    return f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}"


@dataclass
class DbPlan:
    role_exists: bool
    db_exists: bool
    admin_user: str


@dataclass
class DbResult:
    role: str
    database: str
    role_created: bool = False
    password_set: bool = False
    db_created: bool = False
    attributes_fixed: list[str] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


ROLE_ATTRIBUTES = {"rolsuper": "NOSUPERUSER", "rolcreatedb": "NOCREATEDB", "rolcreaterole": "NOCREATEROLE",
                   "rolreplication": "NOREPLICATION", "rolbypassrls": "NOBYPASSRLS"}


def db_preflight(admin_url: str, name: str) -> DbPlan:
    """Reach the admin server and check that this account may do what is left to do. Changes nothing."""
    import psycopg

    try:
        with psycopg.connect(_conninfo(admin_url, connect_timeout=10), autocommit=True) as conn:
            user, sup, createrole, createdb = conn.execute(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
            db_exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    except psycopg.OperationalError as exc:
        raise ServiceError(f"cannot connect to the admin database at {_where(admin_url)}: {str(exc).strip()}") from exc
    missing = []
    if not role_exists and not (sup or createrole):
        missing.append(f"{user} may not create roles (CREATEROLE)")
    if not db_exists and not (sup or createdb):
        missing.append(f"{user} may not create databases (CREATEDB)")
    if missing:
        raise ServiceError("the --admin-db account cannot provision: " + "; ".join(missing))
    return DbPlan(role_exists, db_exists, user)


def provision_database(admin_url: str, code: str, *, rotate: bool, password: str | None) -> DbResult:
    """Role `rpu_<code>` (login, owns nothing) and database `rpu_<code>` (owned by the admin account), the
    schema applied by the admin, and the grants the concentrator needs — no more. Idempotent: an existing role
    keeps its password unless `rotate`. `password` is the new password when one must be set."""
    import psycopg
    from psycopg import sql


    name = f"rpu_{code}"
    res = DbResult(role=name, database=name)
    role, db = sql.Identifier(name), sql.Identifier(name)
    try:
        with psycopg.connect(_conninfo(admin_url, connect_timeout=10), autocommit=True) as conn:
            admin = conn.execute("SELECT current_user").fetchone()[0]
            row = conn.execute(f"SELECT {', '.join(ROLE_ATTRIBUTES)}, rolcanlogin FROM pg_roles WHERE rolname = %s",
                               (name,)).fetchone()
            if (row is None or rotate) and not password:
                raise ServiceError(f"role {name} changed since it was checked: run the same command again")
            if row is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                     "NOBYPASSRLS INHERIT PASSWORD {}").format(
                                         role, sql.Literal(scram_verifier(password))))
                res.role_created = res.password_set = True
            else:
                fixes = [ROLE_ATTRIBUTES[k] for k, v in zip(ROLE_ATTRIBUTES, row) if v]
                if not row[-1]:
                    fixes.append("LOGIN")
                if fixes:
                    conn.execute(sql.SQL("ALTER ROLE {} " + " ".join(fixes)).format(role))
                    res.attributes_fixed = fixes
                if rotate:
                    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        role, sql.Literal(scram_verifier(password))))
                    res.password_set = True
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()
            if owner is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(db))
                    res.db_created = True
                except psycopg.errors.DuplicateDatabase:
                    pass
            elif owner[0] == name:
                res.warnings.append(f"database {name} is owned by the role {name}: more than it needs; "
                                    f"ALTER DATABASE {name} OWNER TO {admin}")
            # nobody but the role (and superusers) may connect; TEMPORARY: the loader's stage table
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, role))
        db_url = _conninfo(admin_url, dbname=name, connect_timeout=10)
        with psycopg.connect(db_url, autocommit=True) as conn:
            try:
                conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
            except psycopg.errors.InsufficientPrivilege:
                # PostgreSQL < 15: schema public belongs to the bootstrap superuser, not to the database's owner
                res.warnings.append(f"could not take PUBLIC's rights on schema public of {name} (its owner is not "
                                    f"{admin}): as a superuser, in {name}: REVOKE ALL ON SCHEMA public FROM PUBLIC; "
                                    f"GRANT USAGE ON SCHEMA public TO {name}")
        res.migrations = store.migrate(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
            admin_role = sql.Identifier(admin)
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}")
                         .format(role))
            conn.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migration FROM {}").format(role))
            conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
            conn.execute(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}").format(role))
            # the quality gate creates (and drops) one view per batch in its own schema, never in public
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA rpu_quality TO {}").format(role))
            # tables of later migrations (`rpu db migrate` with this admin account) get the same grants
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, "
                                 "DELETE ON TABLES TO {}").format(admin_role, role))
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE ON SEQUENCES "
                                 "TO {}").format(admin_role, role))
    except psycopg.Error as exc:
        raise ServiceError(f"PostgreSQL at {_where(admin_url)}: {str(exc).strip()} — fix and run the same command "
                           "again (every step is idempotent)") from exc
    return res


