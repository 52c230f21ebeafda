"""The DAG set generated for several regions, as `rpu region add` provisions them: ids, tags, owners, schedules in
each region's time zone, the reprise form's establishments; and a broken region file isolated from the others."""
from __future__ import annotations

import shutil

import pytest
import yaml

from rpu import dagset
from rpu.config import finess_with_key, load_region
from support.regions import amend_region, dag_folder, region_add

KINDS = ("intake", "send_invs", "export_ars", "send_atih", "watch", "reprise", "release")
NATIONAL_DAGS = {"syrius_reception"}   # the ATIH side's one DAG, whatever the regions (dags/syrius_reception.py)
SCHEDULED = {"intake": "intake_schedule", "send_invs": "send_invs_schedule", "export_ars": "export_ars_schedule",
             "send_atih": "send_atih_schedule", "watch": "watch_schedule"}
REGIONS = {   # code: (name, time zone, number of establishments, extra arguments)
    "idf": ("Île-de-France", "Europe/Paris", 3, []),
    "guy": ("Guyane", "America/Cayenne", 2, []),
    "mtq": ("Martinique", "America/Martinique", 2, ["--old-concentrator"]),
}


def _finess(code: str, i: int) -> str:
    return finess_with_key(f"97{sorted(REGIONS).index(code)}0{i:04d}")


@pytest.fixture(scope="module")
def generated(airflow_db, tmp_path_factory):
    """A DAG folder (rpu_dags + one stub per region) and region files written by `rpu region add`."""
    base = tmp_path_factory.mktemp("generated")
    dags, regions = dag_folder(base / "dags", shipped_regions=False), base / "regions"
    for code, (name, tz, n, extra) in REGIONS.items():
        region_add(regions, dags, code, name, tz, [(_finess(code, i), f"Urgences {code} {i}") for i in range(n)],
                   *extra)
    amend_region(regions / "guy.yaml", team="equipe-guyane")     # a team of its own (owner of its DAGs)
    return dags, regions


@pytest.fixture(scope="module")
def bag(generated):
    from airflow.dag_processing.dagbag import DagBag

    dags, regions = generated
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPU_REGIONS_DIR", str(regions))
        return DagBag(dag_folder=str(dags))


def _regions(generated):
    return {code: load_region(generated[1] / f"{code}.yaml") for code in REGIONS}


def test_every_region_has_exactly_its_dag_set(bag):
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {f"{code}_{kind}" for code in REGIONS for kind in KINDS} | NATIONAL_DAGS


@pytest.mark.parametrize("code", sorted(REGIONS))
def test_tags_owners_and_schedules_in_the_region_time_zone(bag, generated, code):
    region = _regions(generated)[code]
    assert region.team == ("equipe-guyane" if code == "guy" else f"rpu-{code}")
    for kind in KINDS:
        dag = bag.get_dag(f"{code}_{kind}")
        assert code in dag.tags and "rpu" in dag.tags
        assert region.name in (dag.description or "") or region.name in (dag.doc_md or "")
        assert {t.owner for t in dag.tasks} == {region.team}
        assert dag.fileloc == str(generated[0] / f"region_{code}.py")
        if kind in ("reprise", "release"):
            assert type(dag.timetable).__name__ == "NullTimetable"     # triggered from its form only
            continue
        assert dag.timetable.expression == dagset.schedule(region, dagset.kind(kind))
        assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == REGIONS[code][1]


def test_schedules_fire_at_local_time(bag):
    """As the scheduler computes it (the DAG's timetable, serialized and decoded as the scheduler does): the daily
    InVS send fires at 05:30 local time — 08:30 UTC in Cayenne, 09:30 UTC in Martinique, 03:30 UTC in Paris in
    summer and 04:30 UTC in winter."""
    import pendulum
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    for code, day, utc in (("guy", (2026, 1, 15), (8, 30)), ("mtq", (2026, 1, 15), (9, 30)),
                           ("idf", (2026, 1, 15), (4, 30)), ("idf", (2026, 7, 15), (3, 30))):
        dag = bag.get_dag(f"{code}_send_invs")
        timetable = decode_timetable(encode_timetable(dag.timetable))
        info = timetable.next_dagrun_info(
            last_automated_data_interval=None,
            restriction=TimeRestriction(earliest=pendulum.datetime(*day, tz="UTC"), latest=None, catchup=True))
        assert (info.run_after.in_timezone("UTC").hour, info.run_after.minute) == utc, (code, info.run_after)
        local = info.run_after.in_timezone(REGIONS[code][1])
        assert (local.hour, local.minute) == (5, 30)


@pytest.mark.parametrize("code", sorted(REGIONS))
def test_reprise_form_lists_the_region_establishments(bag, generated, code):
    region = _regions(generated)[code]
    params = bag.get_dag(f"{code}_reprise").params
    schema = params.get_param("establishment").schema
    assert schema["enum"] == [e.finess for e in region.establishments]
    labels = schema["values_display"]                # what the trigger form shows: name (FINESS)
    assert list(labels) == schema["enum"]
    assert all(e.name in labels[e.finess] and e.finess in labels[e.finess] for e in region.establishments)
    statuses = {e.status for e in region.establishments}
    assert statuses == ({"shadow"} if code == "mtq" else {"active"})     # --old-concentrator: new ones in shadow
    assert {"start_date", "end_date", "recipients", "dry_run"} <= set(params.keys())


def test_a_broken_region_file_isolates_that_region(generated, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    dags, regions = tmp_path / "dags", tmp_path / "regions"
    shutil.copytree(generated[0], dags, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(generated[1], regions)
    data = yaml.safe_load((regions / "guy.yaml").read_text(encoding="utf-8"))
    bad = data["establishments"][0]["finess"][:8] + "X"
    data["establishments"][0]["finess"] = bad
    (regions / "guy.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("RPU_REGIONS_DIR", str(regions))
    bag = DagBag(dag_folder=str(dags))
    assert list(bag.import_errors) == [str(dags / "region_guy.py")]
    message = bag.import_errors[str(dags / "region_guy.py")]
    assert "guy.yaml" in message and "establishments[0].finess" in message and bad in message
    assert set(bag.dag_ids) == {f"{code}_{kind}" for code in ("idf", "mtq") for kind in KINDS} | NATIONAL_DAGS
