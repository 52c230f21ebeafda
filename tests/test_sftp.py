"""rpu.sftp.Remote on a paramiko client of the suite's SFTP server: names kept as bytes, only regular files read,
atomic uploads, moves that never overwrite (its use by the intake: tests/dags/test_intake*_dag.py)."""
from __future__ import annotations

import io
import os

import pytest

from rpu.sftp import EntryRefused, kind_of
from support.sftp_session import Account


@pytest.fixture
def sftp(sftp_server, tmp_path):
    """(Remote, local chroot) for a fresh account."""
    account = Account(sftp_server, tmp_path / "chroot")
    try:
        with account.open() as remote:
            yield remote, account.root
    finally:
        account.remove()


def test_list_entries_keeps_odd_names_as_bytes_oldest_first_with_their_kind(sftp):
    remote, root = sftp
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "new.xml").write_bytes(b"abc")
    odd = os.fsencode(inbox) + b"/caf\xe9.xml"                # Latin-1, not UTF-8
    with open(odd, "wb") as fh:
        fh.write(b"x")
    (inbox / "sub").mkdir()
    (inbox / "link.xml").symlink_to(inbox / "new.xml")
    for i, name in enumerate((b"caf\xe9.xml", b"new.xml", b"sub", b"link.xml")):
        os.utime(os.fsencode(inbox) + b"/" + name, (1_700_000_000 + i, 1_700_000_000 + i), follow_symlinks=False)
    entries = remote.list_entries("inbox")
    assert [(e.raw, e.kind) for e in entries] == [(b"caf\xe9.xml", "file"), (b"new.xml", "file"), (b"sub", "dir"),
                                                  (b"link.xml", "link")]
    assert entries[1].size == 3 and entries[1].path == b"inbox/new.xml"
    assert remote.list_entries("no_such_dir") == []


def test_download_checked_reads_regular_files_only_and_within_the_limit(sftp):
    remote, root = sftp
    (root / "f.xml").write_bytes(b"0123456789")
    (root / "d").mkdir()
    (root / "l.xml").symlink_to(root / "f.xml")
    out = io.BytesIO()
    assert remote.download_checked("f.xml", out, limit=10) == 10 and out.getvalue() == b"0123456789"
    for path, reason in (("l.xml", "link"), ("d", "dir")):
        with pytest.raises(EntryRefused) as err:
            remote.download_checked(path, io.BytesIO(), limit=100)
        assert err.value.reason == reason
    with pytest.raises(EntryRefused) as err:
        remote.download_checked("f.xml", io.BytesIO(), limit=9)
    assert (err.value.reason, err.value.size) == ("too_large", 10)


def test_put_bytes_and_put_file_are_atomic_and_make_their_directories(sftp, tmp_path):
    remote, root = sftp
    remote.put_bytes("a/b/ack.json", b'{"ok": true}')
    local = tmp_path / "big.xml"
    local.write_bytes(b"<OSCOUR/>" * 1000)
    remote.put_file(local, "a/out/big.xml")
    assert (root / "a/b/ack.json").read_bytes() == b'{"ok": true}'
    assert (root / "a/out/big.xml").read_bytes() == local.read_bytes()
    leftovers = [p.name for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert remote.size("a/out/big.xml") == 9000 and remote.size("a/none") is None
    assert remote.exists("a/b") and not remote.exists("a/c")


def test_replace_overwrites_the_destination(sftp):
    remote, root = sftp
    (root / "src").write_bytes(b"new")
    (root / "dst").write_bytes(b"old")
    remote.replace("src", "dst")
    assert (root / "dst").read_bytes() == b"new" and not (root / "src").exists()


def test_move_into_never_overwrites(sftp):
    remote, root = sftp
    (root / "inbox").mkdir()
    for content in (b"first", b"second"):
        (root / "inbox" / "f.xml").write_bytes(content)
        remote.move_into("inbox/f.xml", "archive")
    moved = sorted((root / "archive").iterdir())
    assert [p.read_bytes() for p in moved] == [b"first", b"second"]
    assert moved[0].name == "f.xml" and moved[1].name.startswith("f.xml.")
    assert remote.move_into(b"archive/f.xml", "done", "renamed.xml") == "done/renamed.xml"


def test_kind_of_without_a_mode_is_other():
    assert kind_of(None) == "other"
    assert kind_of(0o010644) == "other"      # a fifo
