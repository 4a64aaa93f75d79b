import pytest

from saltext.eos.utils import errors
from saltext.eos.utils.observe import settings


@pytest.mark.parametrize(
    ("seconds", "duration"),
    [(0, "0s"), (15, "15s"), (300, "5m"), (90, "1m30s"), (5400, "1h30m"), (86400, "24h")],
)
def test_seconds_become_prometheus_durations(seconds, duration):
    assert settings.duration(seconds) == duration


def test_a_section_takes_the_defaults_under_what_is_given():
    assert settings.section("rules", None, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert settings.section("rules", {"b": 3}, {"a": 1, "b": 2}) == {"a": 1, "b": 3}


def test_an_unknown_option_is_named():
    with pytest.raises(errors.InvalidConfig, match=r"eos:observe:rules: unknown option\(s\) c"):
        settings.section("rules", {"c": 1}, {"a": 1})


def test_a_section_must_be_a_mapping():
    with pytest.raises(errors.InvalidConfig, match="eos:observe:rules: 'x' is not a mapping"):
        settings.section("rules", "x", {"a": 1})


@pytest.mark.parametrize(
    ("value", "message"),
    [(-1, "must be >= 0"), (1.5, "is not a whole number"), ("5m", "is not a number")],
)
def test_whole_numbers_name_the_key(value, message):
    with pytest.raises(errors.InvalidConfig, match=f"eos:observe:rules:for: .*{message}"):
        settings.whole_number(value, "rules", "for")


def test_a_whole_number_may_be_written_as_a_float():
    assert settings.whole_number(60.0, "rules", "for") == 60
