"""Region files: defaults, validation errors (naming the file and the faulty value), FINESS keys."""
from __future__ import annotations

from pathlib import Path

import pytest

from rpu.config import (TEMP_SUFFIXES, ConfigError, Layout, finess_is_valid, finess_with_key, get_region,
                        load_region, load_regions, parse_region)

MINIMAL = """\
code: abc
name: Région ABC
timezone: Europe/Paris
alerts:
  ars: ["veille@ars-abc.example.org"]
establishments:
  - finess: "990000127"
    name: "CH de Valbourg"
"""
NO_ALERTS = MINIMAL.replace('alerts:\n  ars: ["veille@ars-abc.example.org"]\n', "")


def write(directory: Path, text: str, name: str = "abc") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_region(path)
    return str(exc.value)


# --- the demo region and the defaults -----------------------------------------------------------------------


def test_demo_region_loads_with_its_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("RPU_REGIONS_DIR", raising=False)
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "data"))
    r = get_region("demo")
    assert r.code == "demo"
    assert r.timezone == "Europe/Paris"
    assert r.tz.key == "Europe/Paris"
    assert len(r.establishments) == 12
    assert r.db_conn_id == "rpu_demo_db"
    assert r.sftp_intake_conn_id == "rpu_demo_sftp_intake"
    assert r.smtp_conn_id == "smtp_default"
    assert r.team == "rpu-demo"
    assert r.intake.schedule == "*/10 * * * *"
    assert r.intake.layout == Layout("{finess}/inbox", "{finess}/archive", "{finess}/rejected", "{finess}/ack")
    assert r.remote_dir("inbox", "990000127") == "990000127/inbox"
    assert r.archive_dir == tmp_path / "data" / "archive" / "demo"
    assert r.ars_emails == ("ars-veille@demo.invalid",)
    assert r.source is not None and r.source.name == "demo.yaml"


def test_demo_region_establishments_and_ej():
    r = get_region("demo")
    chu_adults, chu_children = r.establishment("990000101"), r.establishment("990000119")
    assert chu_adults.finess_ej == chu_children.finess_ej == "990000010"
    assert chu_adults.identifiers == {"990000101", "990000010"}
    # the EJ is a known identifier of the region (it maps to one of its sites)
    assert r.establishment("990000010") in (chu_adults, chu_children)
    plain = r.establishment("990000127")
    assert plain.identifiers == {"990000127"} and plain.status == "active" and plain.finess_ej is None
    assert r.establishment("990000200").status == "shadow"
    assert r.establishment("990000226") is None
    assert all(finess_is_valid(e.finess) for e in r.establishments)


def test_regions_dir_read_from_environment_at_call_time(monkeypatch, tmp_path):
    write(tmp_path, MINIMAL)
    monkeypatch.setenv("RPU_REGIONS_DIR", str(tmp_path))
    assert get_region("abc").name == "Région ABC"
    assert [r.code for r in load_regions()] == ["abc"]
    with pytest.raises(ConfigError) as exc:
        get_region("demo")
    assert "unknown region 'demo'" in str(exc.value) and "abc" in str(exc.value)


def test_minimal_file_gets_every_default(monkeypatch, tmp_path):
    monkeypatch.setenv("RPU_DATA_DIR", str(tmp_path / "var"))
    r = load_region(write(tmp_path, MINIMAL))
    assert r.code == "abc" and r.name == "Région ABC"
    assert r.team == "rpu-abc"
    assert (r.db_conn_id, r.sftp_intake_conn_id, r.smtp_conn_id) == ("rpu_abc_db", "rpu_abc_sftp_intake",
                                                                      "smtp_default")
    assert r.intake.schedule == "*/10 * * * *"
    assert r.intake.base_dir == ""
    assert r.intake.layout == Layout()
    assert r.intake.stable_seconds == 5.0
    assert r.intake.max_file_bytes == 512 * 1024 * 1024
    assert r.intake.temp_suffixes == TEMP_SUFFIXES
    assert r.archive_dir == tmp_path / "var" / "archive" / "abc"
    assert r.retries == 3 and r.retry_delay_minutes == 5.0 and r.retry_max_delay_minutes == 60
    assert r.ars_emails == ("veille@ars-abc.example.org",) and not r.ars_none and r.ops_emails == ()
    assert r.atih.geo_table is None and r.atih.geo_min_match == 0.95      # no table file: the one loaded by hand is used
    assert r.timeouts["intake"] == {"task_minutes": 30, "dagrun_minutes": 120}
    assert r.timeouts["send"] == {"task_minutes": 60, "dagrun_minutes": 360}
    assert r.sends.invs_deadline == "08:00"
    assert r.source == tmp_path / "abc.yaml"
    (e,) = r.establishments
    assert (e.finess, e.name, e.status, e.finess_ej, e.contact) == ("990000127", "CH de Valbourg", "active", None,
                                                                    None)


def test_overrides_are_read(tmp_path):
    text = MINIMAL + """\
connections: {db: pg_abc, sftp_intake: sftp_abc}
intake:
  schedule: "*/5 * * * *"
  base_dir: /rpu
  max_file_mb: 2
  layout: {inbox: "depot/{finess}"}
archive_dir: /srv/archive
retries: 0
"""
    r = load_region(write(tmp_path, text))
    assert (r.db_conn_id, r.sftp_intake_conn_id, r.smtp_conn_id) == ("pg_abc", "sftp_abc", "smtp_default")
    assert r.intake.schedule == "*/5 * * * *"
    assert r.intake.max_file_bytes == 2 * 1024 * 1024
    assert r.remote_dir("inbox", "990000127") == "/rpu/depot/990000127"
    assert r.remote_dir("ack", "990000127") == "/rpu/990000127/ack"
    assert r.archive_dir == Path("/srv/archive")
    assert r.retries == 0


# --- bad inputs: a ConfigError naming the file and the faulty path/value --------------------------------------


def test_invalid_finess_luhn_key(tmp_path):
    path = write(tmp_path, MINIMAL.replace("990000127", "990000128"))
    msg = config_error(path)
    assert str(path) in msg
    assert "establishments[0].finess" in msg and "'990000128'" in msg and "Luhn" in msg


def test_invalid_finess_ej(tmp_path):
    path = write(tmp_path, MINIMAL + '    finess_ej: "99000001"\n')
    msg = config_error(path)
    assert str(path) in msg and "establishments[0].finess_ej" in msg and "'99000001'" in msg


def test_unknown_timezone(tmp_path):
    path = write(tmp_path, MINIMAL.replace("Europe/Paris", "Europe/Pariss"))
    msg = config_error(path)
    assert str(path) in msg and "timezone" in msg and "'Europe/Pariss'" in msg


def test_blocking_expectations_must_exist(tmp_path):
    """A typo in quality.blocking would hold every batch of the region: the region file is refused instead."""
    from rpu import expectations

    known = sorted(expectations.catalogue())[0]
    ok = load_region(write(tmp_path, MINIMAL + f"quality:\n  blocking: [{known}]\n"))
    assert ok.quality.blocking == (known,)
    path = write(tmp_path, MINIMAL + f"quality:\n  blocking: [{known}, SEXE_DOMIAN]\n")
    msg = config_error(path)
    assert str(path) in msg and "quality.blocking[1]" in msg and "'SEXE_DOMIAN'" in msg and known in msg


def test_timezone_naming_a_directory_is_a_config_error(tmp_path):
    # zoneinfo raises IsADirectoryError for "Europe": it must still be a ConfigError
    path = write(tmp_path, MINIMAL.replace("Europe/Paris", "Europe"))
    msg = config_error(path)
    assert str(path) in msg and "timezone" in msg and "'Europe'" in msg


@pytest.mark.parametrize("tz", ["America/Cayenne", "America/Martinique", "Indian/Reunion"])
def test_overseas_timezones_accepted(tmp_path, tz):
    r = load_region(write(tmp_path, MINIMAL.replace("Europe/Paris", tz)))
    assert r.timezone == tz and r.tz.key == tz


def test_unknown_key_typo(tmp_path):
    path = write(tmp_path, MINIMAL + "retires: 3\n")
    msg = config_error(path)
    assert str(path) in msg and "'retires' was unexpected" in msg


def test_unknown_nested_key_names_its_path(tmp_path):
    path = write(tmp_path, MINIMAL + "intake:\n  schedul: '*/5 * * * *'\n")
    msg = config_error(path)
    assert str(path) in msg and "intake:" in msg and "'schedul' was unexpected" in msg


def test_missing_required_key(tmp_path):
    path = write(tmp_path, MINIMAL.replace("timezone: Europe/Paris\n", ""))
    msg = config_error(path)
    assert str(path) in msg and "'timezone' is a required property" in msg


def test_missing_establishment_name(tmp_path):
    path = write(tmp_path, MINIMAL.replace('    name: "CH de Valbourg"\n', ""))
    msg = config_error(path)
    assert "establishments[0]" in msg and "'name' is a required property" in msg


def test_bad_status(tmp_path):
    path = write(tmp_path, MINIMAL + "    status: actif\n")
    msg = config_error(path)
    assert str(path) in msg and "establishments[0].status" in msg and "'actif'" in msg


def test_duplicate_finess(tmp_path):
    path = write(tmp_path, MINIMAL + '  - finess: "990000127"\n    name: "Doublon"\n')
    msg = config_error(path)
    assert str(path) in msg and "establishments[1].finess" in msg and "'990000127'" in msg and "twice" in msg


def test_shared_ej_is_not_a_duplicate(tmp_path):
    text = MINIMAL.replace('"990000127"', '"990000101"\n    finess_ej: "990000010"') + \
        '  - finess: "990000119"\n    finess_ej: "990000010"\n    name: "Site 2"\n'
    r = load_region(write(tmp_path, text))
    assert [e.finess for e in r.establishments] == ["990000101", "990000119"]


def test_finess_as_number_is_rejected(tmp_path):
    path = write(tmp_path, MINIMAL.replace('"990000127"', "990000127"))
    msg = config_error(path)
    assert "establishments[0].finess" in msg and "not of type 'string'" in msg


def test_file_name_must_be_the_code(tmp_path):
    path = write(tmp_path, MINIMAL, name="xyz")
    msg = config_error(path)
    assert str(path) in msg and "abc.yaml" in msg


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, MINIMAL + "alerts: {ars: [\n")
    msg = config_error(path)
    assert str(path) in msg and "not valid YAML" in msg


@pytest.mark.parametrize("text", ["", "- a list\n", "just text\n"])
def test_not_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    msg = config_error(path)
    assert str(path) in msg and "(top level)" in msg and "not of type 'object'" in msg


def test_every_problem_listed_at_once(tmp_path):
    text = MINIMAL.replace("Europe/Paris", "Mars/Olympus") + '  - finess: "990000128"\n    name: "X"\n'
    msg = config_error(write(tmp_path, text))
    assert "'Mars/Olympus'" in msg and "establishments[1].finess" in msg


def test_layout_must_contain_finess(tmp_path):
    path = write(tmp_path, MINIMAL + "intake:\n  layout:\n    inbox: depot\n")
    msg = config_error(path)
    assert "intake.layout.inbox" in msg and "'depot'" in msg


def test_parse_region_default_source_name():
    with pytest.raises(ConfigError) as exc:
        parse_region({"code": "abc", "name": "x", "timezone": "Europe/Paris", "establishments": [{"finess": "1"}]})
    assert "<region>" in str(exc.value) and "establishments[0]" in str(exc.value)


def test_corsica_finess_accepted(tmp_path):
    r = load_region(write(tmp_path, MINIMAL.replace("990000127", "2A0000019") +
                          '  - finess: "2B0000024"\n    name: "CH de Bastia"\n'))
    assert [e.finess for e in r.establishments] == ["2A0000019", "2B0000024"]


# --- FINESS numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("finess", [
    "750712184",   # AP-HP (EJ)
    "130786049",   # AP-HM (EJ)
    "690781810",   # Hospices civils de Lyon (EJ)
    "330781196",   # CHU de Bordeaux (EJ)
    "590780193",   # CHU de Lille (EJ)
    "990000101", "990000010", "990000127",
    "2A0000019", "2B0000024",   # Corsica: the key is not checked
])
def test_finess_valid(finess):
    assert finess_is_valid(finess) is True


@pytest.mark.parametrize("finess", [
    "750712185", "130786040", "990000128",   # wrong Luhn key
    "99000012", "9900001270", "",            # wrong length
    "99000012A", "2C0000019", "A90000127",   # letters outside 2A/2B
    " 990000127", "990 00127",
    None, 990000127,
])
def test_finess_invalid(finess):
    assert finess_is_valid(finess) is False


def test_finess_with_key():
    assert finess_with_key("99000012") == "990000127"
    assert finess_with_key("75071218") == "750712184"
    assert all(finess_is_valid(finess_with_key(f"{n:08d}")) for n in range(99000000, 99000200))


def test_an_ej_number_that_is_also_a_site_number_is_refused(tmp_path):
    text = """code: abc
name: X
timezone: Europe/Paris
establishments:
  - finess: "990000127"
    name: "A"
  - finess: "990000135"
    finess_ej: "990000127"
    name: "B"
"""
    message = config_error(write(tmp_path, text))
    assert "establishments[1].finess_ej" in message and "990000127" in message


# --- outbound flows and alerts ----------------------------------------------------------------------------------

def test_a_region_with_active_establishments_needs_ars_addresses_or_says_it_has_none(tmp_path):
    """Without alerts.ars the same-day missing-transmission alert would go nowhere: refused unless said on
    purpose (alerts.ars_none: true); a region whose establishments are all in shadow needs none yet."""
    msg = config_error(write(tmp_path, NO_ALERTS))
    assert "alerts.ars" in msg and "alerts.ars_none: true" in msg and "abc.yaml" in msg
    r = load_region(write(tmp_path, NO_ALERTS + "alerts:\n  ars_none: true\n"))
    assert r.ars_emails == () and r.ars_none
    shadow = load_region(write(tmp_path, NO_ALERTS + "    status: shadow\n"))
    assert shadow.ars_emails == ()
    ops = load_region(write(tmp_path, MINIMAL.replace("  ars: [", "  ops: [exploit@abc.example.org]\n  ars: [")))
    assert ops.ops_emails == ("exploit@abc.example.org",)


def test_the_demo_sample_is_never_the_table_of_another_region(tmp_path):
    msg = config_error(write(tmp_path, MINIMAL + "atih:\n  geo_table: include/data/pmsi_geo_sample.csv\n"))
    assert "atih.geo_table" in msg and "demo sample" in msg
    # a relative path is the project's, not the working directory's
    r = load_region(write(tmp_path, MINIMAL + "atih:\n  geo_table: data/pmsi_2026.csv\n  geo_min_match: 0.9\n"))
    from rpu.config import PROJECT_DIR

    assert r.atih.geo_table == PROJECT_DIR / "data" / "pmsi_2026.csv" and r.atih.geo_min_match == 0.9
    assert get_region("demo").atih.geo_table == PROJECT_DIR / "include" / "data" / "pmsi_geo_sample.csv"


def test_timeouts_retries_and_the_invs_deadline_are_read(tmp_path):
    r = load_region(write(tmp_path, MINIMAL + """\
timeouts:
  intake: {task_minutes: 10}
  send: {dagrun_minutes: 90}
retry_max_delay_minutes: 30
schedules: {send_invs_deadline: "07:45"}
"""))
    assert r.timeouts["intake"] == {"task_minutes": 10, "dagrun_minutes": 120}
    assert r.timeouts["send"] == {"task_minutes": 60, "dagrun_minutes": 90}
    assert r.retry_max_delay_minutes == 30 and r.sends.invs_deadline == "07:45"
    assert load_region(write(tmp_path, MINIMAL + "schedules: {send_invs_deadline: none}\n")).sends.invs_deadline is None
    msg = config_error(write(tmp_path, MINIMAL + "timeouts:\n  intake: {task_minutes: 0}\n"))
    assert "timeouts.intake.task_minutes" in msg
