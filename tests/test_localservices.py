"""Round-trips against the real local services of rpu_dev.localservices (no mocks)."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import paramiko
import psycopg
import pytest

from rpu_dev.localservices import PostgresServer, SftpServer, SmtpSink, free_port

# ------------------------------------------------------------------------------ helpers


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _ssh_client(server: SftpServer, username: str, password: str, known_hosts: Path) -> paramiko.SSHClient:
    known_hosts.write_text(server.known_hosts_line() + "\n")
    client = paramiko.SSHClient()
    # Strict checking: only the key written above is trusted, nothing from ~/.ssh.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(str(known_hosts))
    client.connect(
        server.host,
        server.port,
        username=username,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
    )
    return client


@pytest.fixture
def sftp_account(sftp_server: SftpServer) -> Iterator[tuple[str, str, Path]]:
    """A fresh account on the shared SFTP server: (username, password, local chroot)."""
    username, password = _unique("user_"), _unique("pw+/ =")
    chroot = sftp_server.add_user(username, password, sftp_server.root / username)
    yield username, password, chroot
    sftp_server.remove_user(username)


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point Airflow at a scratch AIRFLOW_HOME before its first import in this process."""
    # Session-lived dir: Airflow keeps using it after this module, so it must not vanish early.
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as mp:
        # Airflow reads its config once at import; only redirect it if nobody imported it yet.
        if "airflow" not in sys.modules:
            mp.setenv("AIRFLOW_HOME", str(home))
            mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        yield home


# ------------------------------------------------------------------------------ free_port


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# ------------------------------------------------------------------------------ PostgreSQL


def test_postgres_roundtrip_on_fresh_db(pg_server: PostgresServer, fresh_db: str) -> None:
    dbname = fresh_db.rsplit("/", 1)[1]
    assert fresh_db == f"postgresql://postgres@127.0.0.1:{pg_server.port}/{dbname}"
    with psycopg.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE passage (id serial PRIMARY KEY, finess text NOT NULL, motif text)")
        conn.execute(
            "INSERT INTO passage (finess, motif) VALUES (%s, %s), (%s, %s)",
            ("750712184", "Traumatisme crânien", "690781810", None),
        )
        rows = conn.execute("SELECT finess, motif FROM passage ORDER BY id").fetchall()
        settings = conn.execute(
            "SELECT current_database(), current_user, current_setting('server_encoding'),"
            " current_setting('fsync'), current_setting('listen_addresses')"
        ).fetchone()
    assert rows == [("750712184", "Traumatisme crânien"), ("690781810", None)]
    assert settings == (dbname, "postgres", "UTF8", "off", "127.0.0.1")


def test_postgres_runs_as_postgres_user(pg_server: PostgresServer) -> None:
    pid = pg_server.pid
    assert pid is not None
    owner = os.stat(f"/proc/{pid}").st_uid
    if os.geteuid() == 0:
        assert owner == pwd.getpwnam("postgres").pw_uid
        assert pg_server.data_dir.stat().st_uid == owner
    else:
        assert owner == os.geteuid()


def test_create_database_is_idempotent_and_drop_removes_it(pg_server: PostgresServer) -> None:
    name = _unique("Idem-Potent ")  # mixed case and a space: must be quoted as an identifier
    first = pg_server.create_database(name)
    second = pg_server.create_database(name)
    assert first == second == pg_server.url(name)
    conn = psycopg.connect(first, autocommit=True)
    try:
        assert conn.execute("SELECT current_database()").fetchone() == (name,)
        pg_server.drop_database(name)  # must not hang although this session is still open
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    with psycopg.connect(pg_server.url()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)
    pg_server.drop_database(name)  # dropping a missing database is not an error


def test_atexit_hook_is_inert_in_forked_children(pg_server: PostgresServer) -> None:
    cleanup = pg_server._atexit_cb
    assert cleanup is not None
    child = os.fork()
    if child == 0:  # an executor worker exiting normally would run inherited atexit hooks
        try:
            cleanup()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    with psycopg.connect(pg_server.url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_restart_keeps_data_and_stop_leaves_nothing() -> None:
    base = Path(tempfile.mkdtemp(prefix="rpu-test-pg-restart-"))
    server = PostgresServer(base, fast=False)
    try:
        with server:
            first_pid, port = server.pid, server.port
            assert first_pid is not None and port is not None
            with psycopg.connect(server.url(), autocommit=True) as conn:
                assert conn.execute("SELECT current_setting('fsync')").fetchone() == ("on",)
                conn.execute("CREATE TABLE kept (v int)")
                conn.execute("INSERT INTO kept VALUES (42)")
        assert server.pid is None
        assert not os.path.exists(f"/proc/{first_pid}")
        assert not _port_open("127.0.0.1", port)
        with server:
            assert server.pid not in (None, first_pid)
            with psycopg.connect(server.url()) as conn:
                assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _modes(paths: list[Path]) -> list[int]:
    return [stat.S_IMODE(p.stat().st_mode) for p in paths]


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: PostgreSQL then runs as `postgres`")
def test_search_rights_granted_on_ancestors_are_taken_back_at_stop(tmp_path) -> None:
    """Private ancestors (0700, as mkdtemp makes them) get o+x for the `postgres` user while the server runs,
    and their modes are back when it stops — also when the process that started it was SIGKILLed and another
    one stops it (the demo after a killed run), and not while a second server under them still runs."""
    outer = tmp_path / "private"
    inner = outer / "deeper"
    inner.mkdir(parents=True)
    os.chmod(outer, 0o700)
    os.chmod(inner, 0o750)
    before = _modes([outer, inner])
    first, second = PostgresServer(inner / "one"), PostgresServer(inner / "two")
    with first:
        assert all(m & stat.S_IXOTH for m in _modes([outer, inner]))
        with second:
            pass
        assert all(m & stat.S_IXOTH for m in _modes([outer, inner]))   # `first` still needs them
    assert _modes([outer, inner]) == before

    # started by a process that is then SIGKILLed: PostgreSQL survives it; a later stop() takes the rights back
    code = ("import sys, time; from pathlib import Path; from rpu_dev.localservices import PostgresServer; "
            "s = PostgresServer(Path(sys.argv[1])); s.start(); print(s.pid, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(inner / "killed")], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        assert all(m & stat.S_IXOTH for m in _modes([outer, inner]))
    finally:
        proc.kill()
        proc.wait()
    assert os.path.exists(f"/proc/{pid}")                              # left running by the killed process
    PostgresServer(inner / "killed").stop()
    assert not os.path.exists(f"/proc/{pid}")
    assert _modes([outer, inner]) == before


# ------------------------------------------------------------------------------ SFTP


def test_host_key_formats(sftp_server: SftpServer) -> None:
    key_type, blob = sftp_server.host_key_public.split(" ")
    assert key_type == "ssh-ed25519" and blob.startswith("AAAA")
    assert sftp_server.known_hosts_line() == f"[127.0.0.1]:{sftp_server.port} ssh-ed25519 {blob}"


def test_sftp_upload_download_rename(
    sftp_server: SftpServer, sftp_account: tuple[str, str, Path], tmp_path: Path
) -> None:
    username, password, chroot = sftp_account
    payload = "<RPU>passage é</RPU>\n".encode() * 1000
    client = _ssh_client(sftp_server, username, password, tmp_path / "known_hosts")
    try:
        sftp = client.open_sftp()
        assert sftp.normalize(".") == "/"
        sftp.mkdir("inbox")
        sftp.putfo(io.BytesIO(payload), "inbox/RPU_750712184.xml.part")
        sftp.rename("inbox/RPU_750712184.xml.part", "/inbox/RPU_750712184.xml")
        assert sftp.listdir("/inbox") == ["RPU_750712184.xml"]
        assert sftp.stat("/inbox/RPU_750712184.xml").st_size == len(payload)
        downloaded = io.BytesIO()
        sftp.getfo("/inbox/RPU_750712184.xml", downloaded)
        sftp.close()
    finally:
        client.close()
    assert downloaded.getvalue() == payload
    assert (chroot / "inbox" / "RPU_750712184.xml").read_bytes() == payload
    assert not (chroot / "inbox" / "RPU_750712184.xml.part").exists()


def test_sftp_cannot_escape_chroot(
    sftp_server: SftpServer, sftp_account: tuple[str, str, Path], tmp_path: Path
) -> None:
    username, password, chroot = sftp_account
    neighbour = sftp_server.root / _unique("neighbour_")
    neighbour.mkdir()
    (neighbour / "secret.txt").write_text("not yours")
    (chroot / "mine.txt").write_text("yours")
    client = _ssh_client(sftp_server, username, password, tmp_path / "known_hosts")
    try:
        sftp = client.open_sftp()
        assert sftp.listdir("..") == sftp.listdir("/") == ["mine.txt"]
        assert sftp.normalize("../../..") == "/"
        for path in (f"../{neighbour.name}/secret.txt", f"/../{neighbour.name}/secret.txt", "/etc/passwd"):
            with pytest.raises(FileNotFoundError):
                sftp.stat(path)
        with pytest.raises(FileNotFoundError):
            sftp.open(str(neighbour / "secret.txt"))
        # Writes aimed outside land inside the chroot instead.
        sftp.putfo(io.BytesIO(b"escape attempt"), "../../escape.txt")
        sftp.close()
    finally:
        client.close()
    assert (chroot / "escape.txt").read_bytes() == b"escape attempt"
    assert not (sftp_server.root / "escape.txt").exists()
    assert not (sftp_server.root.parent / "escape.txt").exists()
    assert (neighbour / "secret.txt").read_text() == "not yours"


def test_sftp_rejects_wrong_password(
    sftp_server: SftpServer, sftp_account: tuple[str, str, Path], tmp_path: Path
) -> None:
    username, password, _ = sftp_account
    with pytest.raises(paramiko.AuthenticationException):
        _ssh_client(sftp_server, username, password + "x", tmp_path / "known_hosts")
    with pytest.raises(paramiko.AuthenticationException):
        _ssh_client(sftp_server, _unique("nobody_"), password, tmp_path / "known_hosts")


def test_sftp_pause_then_resume_on_same_port(
    sftp_server: SftpServer, sftp_account: tuple[str, str, Path], tmp_path: Path
) -> None:
    username, password, chroot = sftp_account
    (chroot / "ping.txt").write_text("pong")
    port, host_key = sftp_server.port, sftp_server.host_key_public
    open_client = _ssh_client(sftp_server, username, password, tmp_path / "known_hosts")
    open_sftp = open_client.open_sftp()
    sftp_server.pause()
    try:
        assert not sftp_server.listening
        with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
            _ssh_client(sftp_server, username, password, tmp_path / "known_hosts")
        # An outage also cuts sessions that were already open.
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            open_sftp.listdir("/")
    finally:
        open_client.close()
        sftp_server.resume()
    assert sftp_server.listening
    assert (sftp_server.port, sftp_server.host_key_public) == (port, host_key)
    client = _ssh_client(sftp_server, username, password, tmp_path / "known_hosts")
    try:
        with client.open_sftp() as sftp, sftp.open("ping.txt") as fh:
            assert fh.read() == b"pong"
    finally:
        client.close()


def test_airflow_conn_uri_round_trips(
    sftp_server: SftpServer, airflow_home: Path, sftp_account: tuple[str, str, Path]
) -> None:
    from airflow.models.connection import Connection

    username, password, _ = sftp_account
    uri = sftp_server.airflow_conn_uri(username, password)
    assert uri.startswith(f"sftp://{username}:")
    parsed = Connection(conn_id="rpu_uri_check", uri=uri)
    from_json = Connection.from_json(sftp_server.airflow_conn_json(username, password))
    for conn in (parsed, from_json):
        assert (conn.conn_type, conn.host, conn.port) == ("sftp", "127.0.0.1", sftp_server.port)
        assert (conn.login, conn.password) == (username, password)
        assert conn.extra_dejson["host_key"] == sftp_server.host_key_public


@pytest.mark.parametrize("form", ["json", "uri"])
def test_sftp_hook_lists_directory_via_env_connection(
    sftp_server: SftpServer,
    sftp_account: tuple[str, str, Path],
    airflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    username, password, chroot = sftp_account
    (chroot / "depot").mkdir()
    for name in ("RPU_b.xml", "RPU_a.xml"):
        (chroot / "depot" / name).write_text("<RPU/>")
    make_conn = sftp_server.airflow_conn_json if form == "json" else sftp_server.airflow_conn_uri
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_SFTP", make_conn(username, password))
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id="rpu_test_sftp", conn_retry_attempts=1)
    assert hook.host_key is not None and hook.no_host_key_check is False
    assert f"{hook.host_key.get_name()} {hook.host_key.get_base64()}" == sftp_server.host_key_public
    try:
        assert sorted(hook.list_directory("/depot")) == ["RPU_a.xml", "RPU_b.xml"]
    finally:
        hook.close_conn()


def test_sftp_hook_refuses_a_different_host_key(
    sftp_server: SftpServer,
    sftp_account: tuple[str, str, Path],
    airflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    username, password, _ = sftp_account
    # Same key type, different key: exactly what a man-in-the-middle would present.
    impostor = SftpServer(sftp_server.root / "unused").host_key_public
    conn = json.loads(sftp_server.airflow_conn_json(username, password))
    conn["extra"]["host_key"] = impostor
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_SFTP_BADKEY", json.dumps(conn))
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id="rpu_test_sftp_badkey", conn_retry_attempts=1)
    with pytest.raises(paramiko.BadHostKeyException):
        hook.list_directory("/")


# ------------------------------------------------------------------------------ SMTP


def test_smtp_sink_captures_envelope_and_message(smtp_sink: SmtpSink) -> None:
    smtp_sink.clear()
    msg = EmailMessage()
    msg["From"] = "concentrateur@ors.example"
    msg["To"] = "urgences@chu.example"
    msg["Subject"] = "RPU rejeté : 3 passages en erreur"
    msg.set_content("Le fichier RPU_750712184.xml contient 3 erreurs.\n")
    with smtplib.SMTP("127.0.0.1", smtp_sink.port, timeout=10) as smtp:
        smtp.send_message(msg, to_addrs=["urgences@chu.example", "ars@ars.example"])
    [mail] = smtp_sink.wait_for(1)
    assert mail.mail_from == "concentrateur@ors.example"
    assert mail.rcpt_tos == ["urgences@chu.example", "ars@ars.example"]
    assert mail.subject == "RPU rejeté : 3 passages en erreur"
    assert mail.message["To"] == "urgences@chu.example"
    assert mail.body_text() == "Le fichier RPU_750712184.xml contient 3 erreurs.\n"
    assert mail.auth_login is None
    assert b"\r\n" in mail.raw and mail.raw.startswith(b"From: concentrateur@ors.example")


def test_smtp_sink_accepts_login_and_clear(smtp_sink: SmtpSink) -> None:
    smtp_sink.clear()
    with smtplib.SMTP("127.0.0.1", smtp_sink.port, timeout=10) as smtp:
        smtp.login("airflow", "secret")
        smtp.sendmail("a@x.example", ["b@y.example"], "Subject: hello\r\n\r\nbody\r\n")
    assert [(m.auth_login, m.subject) for m in smtp_sink.messages] == [("airflow", "hello")]
    smtp_sink.clear()
    assert smtp_sink.messages == []
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(1, timeout=0.2)


def test_smtp_sink_airflow_connection(
    smtp_sink: SmtpSink, airflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_sink.clear()
    conn_json = smtp_sink.airflow_conn_json(from_email="rpu@ors.example")
    monkeypatch.setenv("AIRFLOW_CONN_RPU_TEST_SMTP", conn_json)
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id="rpu_test_smtp") as hook:
        hook.send_email_smtp(
            to="ars@ars.example", subject="Bilan quotidien", html_content="<p>12 fichiers</p>"
        )
    [mail] = smtp_sink.wait_for(1)
    assert mail.mail_from == "rpu@ors.example"
    assert (mail.rcpt_tos, mail.subject) == (["ars@ars.example"], "Bilan quotidien")
    assert "<p>12 fichiers</p>" in mail.body_text()


def test_postgres_binaries_fall_back_to_a_pypi_packaged_server(tmp_path, monkeypatch):
    """Without Debian's binaries nor pg_config, the `pgserver` wheel's bundled binaries are used."""
    import shutil as _shutil
    import sys as _sys

    from rpu_dev import localservices as L

    fake = tmp_path / "site" / "pgserver"
    (fake / "pginstall" / "bin").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    for tool in ("pg_ctl", "initdb", "postgres"):
        exe = fake / "pginstall" / "bin" / tool
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(_sys.modules, "pgserver", raising=False)
    real_which = _shutil.which
    monkeypatch.setattr(L.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(L.shutil, "which", lambda name, *a, **k: None if name == "pg_config" else real_which(name, *a, **k))
    assert L.find_postgres_bindir() == fake / "pginstall" / "bin"
    (fake / "pginstall" / "bin" / "pg_ctl").unlink()
    with pytest.raises(RuntimeError, match="scripts/setup"):
        L.find_postgres_bindir()
