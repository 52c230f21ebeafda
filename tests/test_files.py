"""rpu.files: files holding patient data are private (0600 in 0700 directories, whatever the umask), never written
through a symlink; work areas of dead tasks are removed and live ones kept; the archive's retention. (The ingest
side of this — a task killed mid-download — is in test_intake_hostile.py.)"""
from __future__ import annotations

import errno
import os
import stat
import time
from datetime import date
from pathlib import Path

import pytest

from rpu import files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)          # Airflow workers' default: would make 0644 files and 0755 directories
    try:
        yield
    finally:
        os.umask(old)


def test_private_dir_makes_every_missing_level_0700_and_tightens_the_leaf(tmp_path, loose_umask):
    outer = tmp_path / "outer"
    outer.mkdir(mode=0o755)
    leaf = files.private_dir(outer / "a" / "b" / "c")
    assert leaf == outer / "a" / "b" / "c"
    assert [_mode(p) for p in (outer / "a", outer / "a" / "b", leaf)] == [0o700] * 3
    assert _mode(outer) == 0o755                          # an existing parent is not ours to change
    os.chmod(leaf, 0o755)
    files.private_dir(leaf)
    assert _mode(leaf) == 0o700


def test_private_files_are_0600_even_when_they_existed_looser(tmp_path, loose_umask):
    path = tmp_path / "RPU.xml"
    files.write_private(path, b"<OSCOUR/>")
    assert _mode(path) == 0o600 and path.read_bytes() == b"<OSCOUR/>"
    os.chmod(path, 0o644)
    files.write_private(path, b"<OSCOUR>2</OSCOUR>")      # truncated and tightened
    assert _mode(path) == 0o600 and path.read_bytes() == b"<OSCOUR>2</OSCOUR>"
    copy = tmp_path / "copy.xml"
    files.copy_private(path, copy)
    assert _mode(copy) == 0o600 and copy.read_bytes() == path.read_bytes()


def test_a_symlink_in_place_of_a_private_file_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    link = tmp_path / "RPU.xml"
    link.symlink_to(target)
    with pytest.raises(OSError) as info:
        files.write_private(link, b"patient data")
    assert info.value.errno == errno.ELOOP
    assert target.read_bytes() == b"untouched"


def test_a_work_area_is_private_locked_and_removed_at_exit(tmp_path):
    root = tmp_path / "work"
    with files.WorkArea(root) as work:
        assert work.path.parent == root and work.path.name.startswith(f"{os.getpid()}-")
        assert _mode(root) == _mode(work.path) == 0o700
        a, b = work.file("RPU_x.xml"), work.file("RPU_x.xml")
        assert a != b and a.name.endswith("_RPU_x.xml") and a.parent == work.path
        assert files.clean_work(root) == 0                # held by this live process
        assert work.path.exists()
    assert list(root.iterdir()) == []


def test_clean_work_removes_unlocked_areas_and_old_stray_files_only(tmp_path):
    root = tmp_path / "work"
    assert files.clean_work(root) == 0                    # no work directory yet
    root.mkdir()
    dead = root / "123-deadbeef"                          # a killed task's area: its lock file, nobody holds it
    dead.mkdir()
    (dead / files.LOCK_NAME).touch()
    (dead / "x_RPU.xml").write_bytes(b"x")
    young = root / "456-cafecafe"                         # just created, lock not taken yet: left alone
    young.mkdir()
    old_unlocked = root / "789-00000000"                  # no lock file and older than the grace period
    old_unlocked.mkdir()
    past = time.time() - files.NEW_DIR_GRACE_S - 10
    os.utime(old_unlocked, (past, past))
    stray_new, stray_old = root / "new.xml", root / "old.xml"
    stray_new.write_bytes(b"x")
    stray_old.write_bytes(b"x")
    past = time.time() - files.STRAY_FILE_AGE_S - 10
    os.utime(stray_old, (past, past))
    assert files.clean_work(root) == 3
    assert sorted(p.name for p in root.iterdir()) == ["456-cafecafe", "new.xml"]


def _archived(archive: Path, rel: str, day: date) -> Path:
    path = archive / rel
    files.private_dir(path.parent)
    files.write_private(path, b"<OSCOUR/>")
    stamp = time.mktime(day.timetuple())
    os.utime(path, (stamp, stamp))
    return path


def test_retention_deletes_files_older_than_the_days_and_their_emptied_directories(tmp_path):
    archive = tmp_path / "archive"
    today = date(2026, 11, 2)
    old = _archived(archive, "990000127/2025/10/RPU_old.xml", date(2025, 10, 1))
    edge = _archived(archive, "990000127/2025/11/RPU_edge.xml", date(2025, 11, 3))   # 364 days: kept
    recent = _archived(archive, "990000135/2026/11/RPU_new.xml", date(2026, 11, 1))
    assert files.apply_retention(archive, None, today=today) == 0      # no retention: keep everything
    assert files.apply_retention(archive, 0, today=today) == 0
    assert files.apply_retention(tmp_path / "none", 365, today=today) == 0
    assert old.exists()
    assert files.apply_retention(archive, 365, today=today) == 1
    assert not old.exists() and not old.parent.exists()
    assert edge.exists() and recent.exists() and (archive / "990000127" / "2025").is_dir()
    assert files.apply_retention(archive, 30, today=today) == 1
    assert not (archive / "990000127").exists() and recent.exists()
