"""The quality suites, generated from rpu_format and rpu.problems (the one source of the format): rpu_visit (one
row per stored visit) and rpu_batch (one row per entry day of a batch). `python -m rpu.quality --write` writes
them to include/expectations/, where tests/test_quality.py checks they are what this module generates.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rpu import rpu_format as F
from rpu.problems import QUALITY, RULES
from rpu import expectations
from rpu.expectations import BATCH_SUITE, SUITES, VISIT_SUITE

COMPLETENESS_MIN = 0.80        # FEDORU: every item filled on at least 80 % of the visits
# Items measured for completeness: every simple item but ENTREE (always filled: a visit without it is rejected);
# LISTE_DA / LISTE_ACTES are optional lists, not measured.
COMPLETENESS_ITEMS = tuple(i for i in F.SIMPLE_ITEMS if i != "ENTREE")
# Hospitalised visits: the exit modes whose ORIENT is a hospital orientation (MODE_SORTIE 6/7).
HOSPITALISED = tuple(m for m, o in F.ORIENT_BY_MODE_SORTIE.items() if o == F.ORIENT_HOSPITAL)
# DP completeness leaves out patients gone without being seen or against advice (ORIENT FUGUE/PSA/SCAM/REO).
DP_NOT_EXPECTED = F.ORIENT_HOME
# The coherence rules: (rule, mode item, item, allowed values per mode). A batch column `<mode>_<item>` holds
# "<mode>/<value>" when both are filled; the expectation looks at the visits whose mode has a table (an unknown
# mode is its domain rule's business), so the mode part is one of the table's keys and "/" is unambiguous.
COHERENCE = (
    ("PROVENANCE_INCOHERENT", "MODE_ENTREE", "PROVENANCE", F.PROVENANCE_BY_MODE_ENTREE),
    ("DESTINATION_INCOHERENT", "MODE_SORTIE", "DESTINATION", F.DESTINATION_BY_MODE_SORTIE),
    ("ORIENT_INCOHERENT", "MODE_SORTIE", "ORIENT", F.ORIENT_BY_MODE_SORTIE),
)
PAIR_SEP = "/"
# DA / ACTE codes of a visit are joined into one value with chr(1) (it cannot occur in XML text).
LIST_SEP = "\x01"
LIST_SEP_RE = r"\x01"

COUNT_SIGMAS = 3               # FEDORU: a day below μ − 3σ of the recent days is abnormal …
DROP_SIGMAS = 2                # … μ and σ computed after dropping the days below μ − 2σ
PASSAGES, JOURS = "passage(s)", "jour(s)"


# --- the suites, generated from rpu_format ------------------------------------------------------------------

def _exp(name: str, type_: str, description: str, unit: str = PASSAGES, **kwargs) -> dict:
    """One expectation as GX 1.x serialises it, with its stable name and French words in `meta`."""
    return {"type": type_, "kwargs": kwargs, "meta": {"name": name, "description": description, "unit": unit}}


def _in(column: str, values) -> dict:
    """A GX row condition `column IN values`."""
    return {"type": "comparison", "column": {"name": column}, "operator": "IN", "parameter": list(values)}


def _null_or_not_in(column: str, values) -> dict:
    return {"type": "or", "conditions": [
        {"type": "nullity", "column": {"name": column}, "is_null": True},
        {"type": "comparison", "column": {"name": column}, "operator": "NOT_IN", "parameter": list(values)}]}


def full_regex(element: str) -> str:
    """A value that is one code of the format (rpu_format's regexes are used with fullmatch)."""
    return f"^(?:{element})$"


def list_violation_regex(element: str) -> str:
    """Matches a LIST_SEP-joined list of codes as soon as ONE code is not of the format: at the start of some
    code, the code's regex does not reach the next separator or the end. (A code regex can only cross a
    separator through `.*`, which the lookahead makes harmless.)"""
    return f"(?:^|{LIST_SEP_RE})(?!(?:{element})(?:{LIST_SEP_RE}|$))"


def pair_column(mode: str, item: str) -> str:
    return f"{mode.lower()}_{item.lower()}"


def _words(rule: str) -> str:
    level, words = RULES[rule]
    assert level == QUALITY, rule
    return words


def _pct_words(fraction: float) -> str:
    return f"{fraction:.0%}".replace("%", " %")


def visit_expectations() -> list[dict]:
    """rpu_visit: every per-visit quality rule of rpu.checks (same name, same words) and completeness."""
    out = [_exp(f"{item}_DOMAIN", "expect_column_values_to_be_in_set",
                f"{_words(f'{item}_DOMAIN')} ({', '.join(values)})", column=item.lower(), value_set=list(values))
           for item, values in F.DOMAINS.items()]
    out += [
        _exp("CP_FORMAT", "expect_column_values_to_match_regex", _words("CP_FORMAT"),
             column="cp", regex=full_regex(F.CP_RE)),
        _exp("DP_FORMAT", "expect_column_values_to_match_regex", _words("DP_FORMAT"),
             column="dp", regex=full_regex(F.CIM10_RE)),
        _exp("DA_FORMAT", "expect_column_values_to_not_match_regex", _words("DA_FORMAT"),
             column="da", regex=list_violation_regex(F.CIM10_RE)),
        _exp("ACTE_FORMAT", "expect_column_values_to_not_match_regex", _words("ACTE_FORMAT"),
             column="actes", regex=list_violation_regex(F.CCAM_RE)),
        _exp("NAISSANCE_INVALID", "expect_column_values_to_be_null", _words("NAISSANCE_INVALID"),
             column="naissance_invalid"),
        _exp("AGE_RANGE", "expect_column_values_to_be_between", _words("AGE_RANGE"),
             column="age", min_value=0, max_value=F.MAX_AGE_YEARS),
        _exp("SORTIE_INVALID", "expect_column_values_to_be_null", _words("SORTIE_INVALID"),
             column="sortie_invalid"),
        _exp("DURATION_NEGATIVE", "expect_column_values_to_be_between", _words("DURATION_NEGATIVE"),
             column="duree_min", min_value=0, strict_min=True),
        _exp("DURATION_TOO_LONG", "expect_column_values_to_be_between", _words("DURATION_TOO_LONG"),
             column="duree_min", max_value=F.MAX_DURATION_HOURS * 60),
    ]
    for rule, mode, item, table in COHERENCE:
        # a row condition costs GX two queries of its own; a regex covering unknown modes costs more (measured)
        out.append(_exp(rule, "expect_column_values_to_be_in_set", _words(rule),
                        column=pair_column(mode, item),
                        value_set=[f"{m}{PAIR_SEP}{v}" for m, values in table.items() for v in values if v],
                        row_condition=_in(mode.lower(), table)))
    for item in COMPLETENESS_ITEMS:
        kwargs: dict = {"column": item.lower(), "mostly": COMPLETENESS_MIN}
        scope = "des passages"
        if item in ("DESTINATION", "ORIENT"):
            kwargs["row_condition"] = _in("mode_sortie", HOSPITALISED)
            scope = f"des passages hospitalisés (MODE_SORTIE {'/'.join(HOSPITALISED)})"
        elif item == "DP":
            kwargs["row_condition"] = _null_or_not_in("orient", DP_NOT_EXPECTED)
            scope = f"des passages (hors ORIENT {'/'.join(DP_NOT_EXPECTED)})"
        out.append(_exp(f"COMPLETENESS_{item}", "expect_column_values_to_not_be_null",
                        f"{item} renseigné sur moins de {_pct_words(COMPLETENESS_MIN)} {scope}", **kwargs))
    return out


def batch_expectations() -> list[dict]:
    """rpu_batch: one row per entry day of the batch (`day`, `visits`), against the establishment's recent days;
    the bounds are suite parameters computed at run time (`count_parameters`)."""
    return [
        _exp("DAY_COUNT_LOW", "expect_column_values_to_be_between",
             f"jour dont le nombre de passages est anormalement bas (sous μ − {COUNT_SIGMAS}σ des jours récents "
             "de l'établissement)", unit=JOURS, column="visits", min_value={"$PARAMETER": "day_min"}),
        _exp("ROW_COUNT", "expect_column_sum_to_be_between",
             f"nombre de passages du lot incohérent avec les jours récents de l'établissement (hors de "
             f"n·μ ± {COUNT_SIGMAS}σ·√n pour n jours)", unit="", column="visits",
             min_value={"$PARAMETER": "row_count_min"}, max_value={"$PARAMETER": "row_count_max"}),
    ]


SUITE_DOCS = {
    VISIT_SUITE: "RPU visits of one batch (the visits stored from one received file): value domains, formats, "
                 "age, duration, coherence of entry and exit blocks (the per-visit rules of rpu.checks, same "
                 "names) and completeness per item (FEDORU, mostly 0.8).",
    BATCH_SUITE: "Entry days of one batch: visits per day against the establishment's recent days (FEDORU: "
                 "abnormal below μ − 3σ, μ and σ computed after dropping the days below μ − 2σ).",
}
BUILDERS = {VISIT_SUITE: visit_expectations, BATCH_SUITE: batch_expectations}


def suite_version(expectations: list[dict]) -> str:
    """The version of a suite: a hash of its expectations (any change to a rule changes it)."""
    canonical = json.dumps(expectations, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def build(name: str) -> dict:
    """The suite `name` as a GX 1.x suite document (what `ExpectationSuite(**doc)` takes)."""
    expectations = BUILDERS[name]()
    return {"name": name, "expectations": expectations,
            "meta": {"version": suite_version(expectations), "description": SUITE_DOCS[name],
                     "generated_by": "python -m rpu.quality --write (from include/rpu/rpu_format.py)"},
            "notes": None}


def render(name: str) -> str:
    """The JSON text committed as include/expectations/<name>.json."""
    return json.dumps(build(name), ensure_ascii=False, indent=1) + "\n"



def write() -> list[Path]:
    expectations.SUITES_DIR.mkdir(parents=True, exist_ok=True)
    for name in SUITES:
        expectations.suite_path(name).write_text(render(name), encoding="utf-8")
    return [expectations.suite_path(name) for name in SUITES]

