"""rpu.problems: the named rules, their levels and how a Problem reads."""
from __future__ import annotations

import dataclasses

import pytest

from rpu.problems import FILE, INTAKE_RULES, QUALITY, RULES, VISIT, WARNING, Problem


def test_every_rule_has_a_known_level_and_a_french_description():
    for rule, (level, description) in RULES.items():
        assert level in (FILE, VISIT, QUALITY, WARNING), rule
        assert description and description == description.strip(), rule


def test_intake_rules_are_file_rules_that_exist():
    assert INTAKE_RULES <= set(RULES)
    assert {RULES[r][0] for r in INTAKE_RULES} == {FILE}


@pytest.mark.parametrize("rule,level", [("SCHEMA", FILE), ("ENTREE_MISSING", VISIT), ("CP_FORMAT", QUALITY),
                                        ("ENCODING", WARNING), ("SEXE_DOMAIN", QUALITY)])
def test_level_is_the_rules(rule, level):
    assert Problem(rule, "x").level == level


def test_str_says_where_line_and_visit():
    assert str(Problem("ENTREE_MISSING", "absente", line=12, visit=3)) == \
        "[ENTREE_MISSING] ligne 12, passage n°3 : absente"
    assert str(Problem("SCHEMA", "balise", line=4)) == "[SCHEMA] ligne 4 : balise"
    assert str(Problem("CP_FORMAT", "mal formé", visit=7)) == "[CP_FORMAT] passage n°7 : mal formé"
    # line 0 / visit 0 are "unknown", not a place
    assert str(Problem("SCHEMA", "balise", line=0, visit=0)) == "[SCHEMA] balise"


def test_as_dict_is_every_field_and_a_problem_is_a_frozen_value():
    p = Problem("DP_FORMAT", "hors format", line=5, visit=2)
    assert p.as_dict() == {"rule": "DP_FORMAT", "message": "hors format", "line": 5, "visit": 2}
    assert Problem(**p.as_dict()) == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rule = "SCHEMA"


def test_an_unknown_rule_is_refused_with_its_name():
    with pytest.raises(ValueError, match="unknown rule TYPO_RULE"):
        Problem("TYPO_RULE", "x")
