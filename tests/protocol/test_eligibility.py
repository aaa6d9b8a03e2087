import pytest

from protocol.eligibility import EligibilityRule
from protocol.errors import ProtocolError

RULE = 'charging and unmetered and idle and battery >= 0.3 and runtime_version >= "1.10"'
GOOD = dict(charging=True, unmetered=True, idle=True, battery=0.5, runtime_version="1.10.2")


@pytest.mark.parametrize(
    "change, admitted",
    [
        ({}, True),
        ({"charging": False}, False),
        ({"unmetered": False}, False),
        ({"idle": False}, False),
        ({"battery": 0.2}, False),
        ({"runtime_version": "1.9"}, False),  # a version, not a string: 1.9 < 1.10
        ({"runtime_version": "2.0"}, True),
    ],
)
def test_rule_over_device_state(change, admitted):
    assert EligibilityRule.parse(RULE).admits({**GOOD, **change}) is admitted


def test_missing_field_is_not_eligible_and_empty_rule_admits_all():
    assert not EligibilityRule.parse("battery >= 0.3").admits({})
    assert EligibilityRule.parse("").admits({})
    assert EligibilityRule.parse("not charging or battery > 0.9").admits({"charging": False})


@pytest.mark.parametrize(
    "text, column",
    [
        ("charging and foo", 14),
        ("battery", 1),
        ('battery >= "x"', 12),
        ('__import__("os")', 1),
    ],
)
def test_bad_rules_name_the_position(text, column):
    with pytest.raises(ProtocolError) as exc:
        EligibilityRule.parse(text)
    assert f"column {column}" in str(exc.value)
    assert exc.value.code == "bad_rule"


def test_syntax_error_is_reported():
    with pytest.raises(ProtocolError, match="syntax error"):
        EligibilityRule.parse("charging and")


def test_true_false_literals_and_strings_containing_them():
    assert EligibilityRule.parse("charging == true").admits({"charging": True})
    assert not EligibilityRule.parse("charging == false").admits({"charging": True})
    rule = EligibilityRule.parse('runtime == "untrue-runtime"')
    assert rule.admits({"runtime": "untrue-runtime"})


def test_the_failed_clauses_are_named_as_written():
    """What the operator page counts: the top-level clauses a state fails, in the rule's own
    spelling (true/false, the field's name), the whole rule when it is not a conjunction."""
    rule = EligibilityRule.parse('charging and unmetered == true and battery >= 0.3 and runtime_version >= "2.0"')
    state = {"charging": True, "unmetered": False, "battery": 0.2, "runtime_version": "2.1"}
    assert rule.failed_clauses(state) == ["unmetered == true", "battery >= 0.3"]
    assert rule.failed_clauses({**state, "unmetered": True, "battery": 0.9}) == []
    either = EligibilityRule.parse("charging or idle")
    assert either.failed_clauses({}) == ["charging or idle"]
    assert EligibilityRule.parse("").failed_clauses({}) == []
