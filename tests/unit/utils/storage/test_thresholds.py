import pytest

from saltext.eos.utils import config
from saltext.eos.utils.storage import thresholds
from tests.support import layers as support_layers


def layers(minion=None, pillar=None):
    return support_layers.minion(minion, pillar)


def values(limits):
    return [limits.values[level] for level in thresholds.THRESHOLD_LEVELS]


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ("single", [60, 70, 75, 80, 85, 90]),
        ("small", [65, 75, 80, 85, 90, 95]),
        ("medium", [70, 80, 85, 90, 93, 95]),
        ("distributed", [70, 80, 85, 90, 93, 95]),
    ],
)
def test_scale_profiles(scale, expected):
    limits = thresholds.effective(layers(pillar={"scale": scale}))
    assert values(limits) == expected
    assert set(limits.sources.values()) == {f"profile:{scale}"}


def test_default_scale_is_single():
    assert values(thresholds.effective(layers()))[0] == 60


def test_partial_global_override_changes_only_named_levels():
    limits = thresholds.effective(layers(minion={"thresholds": {"warning": 55}}))
    assert values(limits) == [55, 70, 75, 80, 85, 90]
    assert limits.sources["warning"] == "eos:thresholds:warning (minion config)"
    assert limits.sources["compress"] == "profile:single"


def test_pillar_beats_minion_config():
    limits = thresholds.effective(
        layers(minion={"thresholds": {"warning": 55}}, pillar={"thresholds": {"warning": 50}})
    )
    assert limits.values["warning"] == 50
    assert limits.sources["warning"] == "eos:thresholds:warning (pillar)"


def test_role_override_applies_to_nodes_with_that_role():
    conf = {"roles": ["data"], "thresholds": {"roles": {"data": {"critical": 88}}}}
    limits = thresholds.effective(layers(pillar=conf))
    assert limits.values["critical"] == 88
    assert limits.sources["critical"] == "eos:thresholds:roles:data:critical (pillar)"
    other = thresholds.effective(layers(pillar={**conf, "roles": ["app"]}))
    assert other.values["critical"] == 90


def test_several_roles_take_the_strictest_value():
    conf = {
        "roles": ["data", "app"],
        "thresholds": {"roles": {"data": {"warning": 58}, "app": {"warning": 52}}},
    }
    assert thresholds.effective(layers(pillar=conf)).values["warning"] == 52


def test_mount_glob_overrides_and_most_specific_wins():
    conf = {
        "thresholds": {
            "mounts": {"/var/*": {"emergency": 88}, "/var/lib/*": {"emergency": 89}},
        }
    }
    assert thresholds.effective(layers(pillar=conf), mount="/var/lib/pg").values["emergency"] == 89
    assert thresholds.effective(layers(pillar=conf), mount="/var/log").values["emergency"] == 88
    assert thresholds.effective(layers(pillar=conf), mount="/").values["emergency"] == 85


def test_mount_patterns_merge_across_layers():
    limits = thresholds.effective(
        layers(
            minion={"thresholds": {"mounts": {"/srv": {"warning": 50}}}},
            pillar={"thresholds": {"mounts": {"/srv": {"critical": 97}}}},
        ),
        mount="/srv",
    )
    assert limits.values["warning"] == 50
    assert limits.values["critical"] == 97


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"thresholds": {"warning": "sixty"}}, "eos:thresholds:warning: 'sixty' is not a number"),
        ({"thresholds": {"warning": True}}, "eos:thresholds:warning: True is not a number"),
        ({"thresholds": {"warning": 0}}, "eos:thresholds:warning: 0 must be > 0"),
        ({"thresholds": {"critical": 101}}, "eos:thresholds:critical: 101 must be <= 100"),
        ({"thresholds": {"warnng": 50}}, "eos:thresholds:warnng: unknown level"),
        (
            {"thresholds": {"roles": {"data": {"cleanup": "x"}}}},
            "eos:thresholds:roles:data:cleanup: 'x' is not a number",
        ),
        ({"thresholds": {"mounts": {"/": 5}}}, "eos:thresholds:mounts:/: 5 is not a mapping"),
        ({"scale": "huge"}, "eos:scale: 'huge' is not a known scale"),
    ],
)
def test_invalid_values_name_the_key_and_value(conf, message):
    with pytest.raises(thresholds.InvalidThresholds, match=message.replace("[", r"\[")):
        thresholds.effective(layers(pillar=conf))


def test_unordered_levels_are_rejected_naming_both_sources():
    with pytest.raises(thresholds.InvalidThresholds) as err:
        thresholds.effective(layers(pillar={"thresholds": {"cleanup": 65}}))
    text = str(err.value)
    assert "cleanup=65 (from eos:thresholds:cleanup (pillar))" in text
    assert "compress=70 (from profile:single)" in text


def test_invalid_role_values_fail_even_for_other_roles():
    conf = {"roles": ["app"], "thresholds": {"roles": {"data": {"warning": -1}}}}
    with pytest.raises(thresholds.InvalidThresholds, match="roles:data:warning"):
        thresholds.effective(layers(pillar=conf))


@pytest.mark.parametrize(
    ("percent", "level"),
    [
        (None, "none"),
        (0, "none"),
        (59.99, "none"),
        (60, "warning"),
        (70, "compress"),
        (77, "cleanup"),
        (80, "degraded"),
        (85.5, "emergency"),
        (90, "critical"),
        (100, "critical"),
    ],
)
def test_level_for(percent, level):
    assert thresholds.effective(layers()).level_for(percent) == level


def test_actions_include_every_lower_level():
    assert thresholds.actions_for("none") == []
    assert thresholds.actions_for("cleanup") == ["monitor", "compress", "cleanup"]
    assert thresholds.actions_for("critical")[-1] == "critical"
    assert len(thresholds.actions_for("critical")) == 6


def test_worse_picks_the_higher_level():
    assert thresholds.worse("warning", "cleanup") == "cleanup"
    assert thresholds.worse("none", "none") == "none"


def test_an_unordered_mount_override_is_an_error_even_for_other_mounts():
    conf = {"thresholds": {"mounts": {"/srv/*": {"compress": 50}}}}
    with pytest.raises(thresholds.InvalidThresholds, match="for mount /srv/\\*"):
        thresholds.effective(layers(pillar=conf), mount="/")


# --- one level, two spellings ------------------------------------------------------------------


def test_degrade_is_accepted_for_degraded_everywhere_a_threshold_is_set():
    given = layers(
        minion={
            "thresholds": {
                "degrade": 84,
                "roles": {"data": {"degrade": 82}},
                "mounts": {"/var": {"degrade": 81}},
            }
        }
    )
    assert thresholds.effective(given, roles=[]).values["degraded"] == 84
    on_data = thresholds.effective(given, roles=["data"])
    assert on_data.values["degraded"] == 82
    assert on_data.sources["degraded"].startswith("eos:thresholds:roles:data:degrade ")
    assert thresholds.effective(given, mount="/var", roles=[]).values["degraded"] == 81


def test_both_spellings_of_one_level_are_refused_naming_them():
    given = layers(minion={"thresholds": {"degrade": 91, "degraded": 92}})
    with pytest.raises(thresholds.InvalidThresholds, match="degraded and degrade"):
        thresholds.effective(given)


def test_level_name_resolves_only_the_alias():
    assert thresholds.level_name("degrade") == "degraded"
    assert thresholds.level_name("degraded") == "degraded"
    assert thresholds.level_name("cleanup") == "cleanup"
    assert thresholds.level_name(None) is None


@pytest.mark.parametrize(("given", "level"), [("warning", "warning"), ("degrade", "degraded")])
def test_a_level_setting_takes_a_level_or_its_alias(given, level):
    assert thresholds.threshold_level(given, "eos:x") == level


@pytest.mark.parametrize("given", ["panic", None, 3, "none"])
def test_a_level_setting_names_its_key_when_it_is_not_a_level(given):
    with pytest.raises(config.InvalidConfig, match=rf"eos:x: unknown level {given!r}; expected"):
        thresholds.threshold_level(given, "eos:x")
