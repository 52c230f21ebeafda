"""rpu.expectations: the committed quality suites, their catalogue and the check of `quality.blocking`."""
from __future__ import annotations

from rpu import expectations


def test_both_suites_are_loaded_with_their_name_and_expectations():
    for name in expectations.SUITES:
        suite = expectations.load(name)
        assert suite["name"] == name and suite["expectations"], name
        assert expectations.suite_path(name).is_file()


def test_catalogue_names_each_expectation_once_with_its_suite():
    cat = expectations.catalogue()
    total = sum(len(expectations.load(s)["expectations"]) for s in expectations.SUITES)
    assert len(cat) == total                       # no name given to two expectations
    assert {e["suite"] for e in cat.values()} == set(expectations.SUITES)
    assert all(e["description"] and isinstance(e["unit"], str) and e["type"].startswith("expect_") for e in cat.values())


def test_blocking_problems_names_only_the_unknown_names_with_their_position():
    known = sorted(expectations.catalogue())
    assert expectations.blocking_problems([]) == []
    assert expectations.blocking_problems(known) == []
    problems = expectations.blocking_problems([known[0], "SEXE_DOMIAN", known[1], "nope"])
    assert [p.split(":")[0] for p in problems] == ["quality.blocking[1]", "quality.blocking[3]"]
    assert "'SEXE_DOMIAN'" in problems[0] and known[0] in problems[0]     # says what is known
