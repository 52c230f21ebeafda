"""The `rpu` command: exit codes, JSON lines, region checks, help texts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rpu.cli import main
from support.rpu_xml import rpu_file, visit

RPU = Path(sys.executable).parent / "rpu"
JSON_KEYS = {"file", "accepted", "finess", "period_start", "period_end", "visits", "visits_rejected", "errors",
             "warnings"}


@pytest.fixture(autouse=True)
def project_regions(monkeypatch):
    """`--region demo` reads the project's config/regions (also in the subprocess, which inherits os.environ)."""
    monkeypatch.delenv("RPU_REGIONS_DIR", raising=False)


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.xml"
    path.write_bytes(rpu_file([visit(), visit(ENTREE="30/10/2026 08:00", SORTIE="30/10/2026 09:00"),
                               visit(ENTREE="")]))
    return path


@pytest.fixture
def bad(tmp_path) -> Path:
    path = tmp_path / "bad.xml"
    data = rpu_file([visit(), visit()])
    path.write_bytes(data[: len(data) - 30])   # truncated
    return path


@pytest.fixture
def unknown_finess(tmp_path) -> Path:
    path = tmp_path / "unknown.xml"
    path.write_bytes(rpu_file([visit()], finess="990000226"))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_validate_good_file(capsys, good):
    code, out, err = run(capsys, "validate", str(good))
    assert code == 0
    assert out.startswith(f"{good}: ACCEPTÉ — FINESS 990000127, période 2026-10-26 → 2026-11-01, 3 passages "
                          "(1 rejetés")
    assert "[ENTREE_MISSING] ligne 7, passage n°3" in out


def test_validate_one_file_of_two_rejected(capsys, good, bad):
    code, out, err = run(capsys, "validate", str(good), str(bad))
    assert code == 1
    assert f"{good}: ACCEPTÉ" in out and f"{bad}: REJETÉ" in out
    assert "[NOT_WELL_FORMED] ligne" in out


def test_validate_json(capsys, good, bad):
    code, out, err = run(capsys, "validate", "--json", str(good), str(bad))
    assert code == 1
    first, second = json_lines(out)
    assert JSON_KEYS <= set(first) and JSON_KEYS <= set(second)
    assert first["file"] == str(good) and first["accepted"] is True
    assert first["finess"] == "990000127"
    assert (first["period_start"], first["period_end"]) == ("2026-10-26", "2026-11-01")
    assert first["visits"] == 3 and first["visits_rejected"] == 1 and first["visits_accepted"] == 2
    assert first["errors"] == [{"rule": "ENTREE_MISSING", "message": first["errors"][0]["message"], "line": 7,
                                "visit": 3}]
    assert first["warnings"] == []
    assert first["per_day"] == {"2026-10-30": 1, "2026-11-01": 1}
    assert second["file"] == str(bad) and second["accepted"] is False
    (error,) = second["errors"]
    assert set(error) == {"rule", "message", "line", "visit"}
    assert error["rule"] == "NOT_WELL_FORMED" and isinstance(error["line"], int)
    assert second["visits_accepted"] == 0


def test_validate_json_warnings(capsys, tmp_path):
    path = tmp_path / "cp1252.xml"
    path.write_bytes(rpu_file([visit(COMMUNE="Évry")], declaration=False, encoding="WINDOWS-1252"))
    code, out, _ = run(capsys, "validate", "--json", str(path))
    assert code == 0
    (d,) = json_lines(out)
    assert [w["rule"] for w in d["warnings"]] == ["ENCODING"]
    assert set(d["warnings"][0]) == {"rule", "message", "line", "visit"}


def test_validate_region_flags_unknown_finess(capsys, good, unknown_finess):
    code, out, _ = run(capsys, "validate", "--json", str(unknown_finess))
    assert code == 0 and json_lines(out)[0]["accepted"] is True       # without a region: presence only
    code, out, _ = run(capsys, "validate", "--json", "--region", "demo", str(good), str(unknown_finess))
    assert code == 1
    ok, unknown = json_lines(out)
    assert ok["accepted"] is True and ok["etab"] == "990000127"
    assert unknown["accepted"] is False
    assert [e["rule"] for e in unknown["errors"]] == ["FINESS_UNKNOWN"]
    assert unknown["finess"] == "990000226"


def test_validate_sender(capsys, good):
    code, out, _ = run(capsys, "validate", "--json", "--region", "demo", "--sender", "990000101", str(good))
    assert code == 1 and [e["rule"] for e in json_lines(out)[0]["errors"]] == ["FINESS_NOT_SENDER"]
    code, out, _ = run(capsys, "validate", "--json", "--region", "demo", "--sender", "990000127", str(good))
    assert code == 0


def test_usage_errors(capsys, good, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--bogus", str(good)])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    code, out, err = run(capsys, "validate", str(tmp_path / "missing.xml"))
    assert code == 2 and "missing.xml: no such file" in err
    code, out, err = run(capsys, "validate", "--region", "nowhere", str(good))
    assert code == 2 and "unknown region 'nowhere'" in err


@pytest.mark.parametrize("argv, words", [
    ([], ["usage: rpu", "validate", "db", "ingest", "synth"]),
    (["validate"], ["usage: rpu validate", "--region", "--sender", "--json", "FILE"]),
    (["db", "migrate"], ["usage: rpu db migrate", "--db"]),
    (["ingest"], ["usage: rpu ingest", "--region", "--db", "--sender"]),
    (["synth"], ["usage: rpu synth", "--out", "--visits"]),
])
def test_help(capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def test_real_subprocess(good, bad, tmp_path):
    assert RPU.exists()
    ok = subprocess.run([str(RPU), "validate", "--json", "--region", "demo", str(good)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    (d,) = json_lines(ok.stdout)
    assert d["accepted"] is True and d["visits"] == 3
    mixed = subprocess.run([str(RPU), "validate", str(good), str(bad)], capture_output=True, text=True, timeout=60)
    assert mixed.returncode == 1
    assert "REJETÉ" in mixed.stdout
    usage = subprocess.run([str(RPU), "validate", "--nope", str(good)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: rpu" in usage.stderr
    missing = subprocess.run([str(RPU), "validate", str(tmp_path / "none.xml")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2
    helped = subprocess.run([str(RPU), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "usage: rpu" in helped.stdout


def test_db_migrate_and_ingest_on_a_real_database(capsys, fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "data"))
    code, out, _ = run(capsys, "db", "migrate", "--db", fresh_db)
    assert code == 0 and "001_intake.sql" in out
    code, out, _ = run(capsys, "db", "migrate", "--db", fresh_db)
    assert code == 0 and "up to date" in out
    ok = tmp_path / "ok.xml"
    ok.write_bytes(rpu_file([visit(), visit(ENTREE="")], finess="990000127"))
    broken = tmp_path / "broken.xml"
    broken.write_bytes(rpu_file([visit()], finess="990000127", extract=""))
    code, out, _ = run(capsys, "ingest", "--region", "demo", "--db", fresh_db, str(ok), str(broken))
    assert code == 1
    assert f"{ok}: accepted — 1 visits loaded, 1 rejected" in out
    assert f"{broken}: rejected" in out and "EXTRACT_MISSING" in out
    assert list((tmp_path / "data" / "archive" / "demo" / "manual").rglob("ok.xml"))


def test_progress_is_reported_while_a_big_file_streams(tmp_path):
    from rpu.checks import PROGRESS_EVERY, check_file

    n = PROGRESS_EVERY * 2 + 5
    path = tmp_path / "big.xml"
    path.write_bytes(rpu_file([visit()] * n))
    seen = []
    report = check_file(path, progress=seen.append)
    assert report.visits == n and seen == [PROGRESS_EVERY, PROGRESS_EVERY]
