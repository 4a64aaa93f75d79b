"""
The rules file: its structure and settings, then, with promtool, that each alert fires at the
boundary the node itself applies (after its ``for``) and not one sample before.

The boundary tests feed promtool the samples ``storage.metrics`` writes for analyzer reports
one step below and exactly at a threshold, so the textfile, the analyzer and the rules are
checked to agree with each other rather than with numbers copied here.
"""

from types import SimpleNamespace

import pytest

from saltext.eos.utils import errors
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.observe import rules
from saltext.eos.utils.observe import targets
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import metrics
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import watch
from tests.support import layers as support_layers
from tests.unit.utils.observe.conftest import run
from tests.unit.utils.observe.conftest import write_yaml

MINION = "data-1"
# What the scrape of targets.py adds to every series of the node.
TARGET_LABELS = {"node": MINION, "roles": ",data,", "instance": "10.0.0.5:9100", "job": targets.JOB}
# promtool samples are one beacon run apart; the level changes after RUNS_BELOW of them.
STEP_MINUTES = 1
RUNS_BELOW = 10
RUNS_AT = 40
BLOCKS = 10_000  # one block is 0.01 %, the analyzer's resolution
# The thresholds under test: a scale's profile and a mount override off the round numbers.
EOS_CONFIG = {"scale": "medium", "thresholds": {"mounts": {"/": {"warning": 72.5}}}}


def level_rules(**settings):
    return {rule["alert"]: rule for rule in rules.rules_file(settings)["groups"][0]["rules"]}


# --- structure --------------------------------------------------------------------------------


def test_one_alert_per_level_in_level_order():
    alerts = [rule["alert"] for rule in rules.level_rules(rules.read_settings())]

    assert alerts == [rules.level_alert(level) for level in thresholds.THRESHOLD_LEVELS]
    assert alerts[0] == "EosStorageWarning"
    assert alerts[-1] == "EosStorageCritical"


def test_every_alert_of_the_file_is_in_one_group():
    found = rules.rules_file()

    assert [group["name"] for group in found["groups"]] == [rules.GROUP]
    assert set(level_rules()) == {
        *(rules.level_alert(level) for level in thresholds.THRESHOLD_LEVELS),
        "EosStorageForecastWarning",
        "EosStorageForecastCritical",
        rules.STALE_ALERT,
        rules.EXPORTER_DOWN_ALERT,
    }


def test_a_level_compares_each_ratio_with_the_threshold_of_its_own_mount_and_level():
    expr = level_rules()["EosStorageCleanup"]["expr"]

    threshold = 'eos_storage_threshold_ratio{level="cleanup"}'
    assert f"eos_storage_usage_ratio >= ignoring(level) {threshold}" in expr
    assert f"eos_storage_inode_ratio >= ignoring(level) {threshold}" in expr


def test_without_inodes_only_the_usage_ratio_counts():
    expr = level_rules(inodes=False)["EosStorageCleanup"]["expr"]

    assert expr == (
        'eos_storage_usage_ratio >= ignoring(level) eos_storage_threshold_ratio{level="cleanup"}'
    )


def test_level_labels_and_severities():
    found = level_rules()

    assert {
        level: found[rules.level_alert(level)]["labels"] for level in thresholds.THRESHOLD_LEVELS
    } == {
        "warning": {"severity": "warning", "level": "warning"},
        "compress": {"severity": "warning", "level": "compress"},
        "cleanup": {"severity": "warning", "level": "cleanup"},
        "degraded": {"severity": "critical", "level": "degraded"},
        "emergency": {"severity": "critical", "level": "emergency"},
        "critical": {"severity": "critical", "level": "critical"},
    }


def test_severities_are_named_after_the_ends_of_the_level_list():
    assert rules.SEVERITIES == ("warning", "critical")


def test_critical_from_moves_the_severity_boundary():
    found = level_rules(critical_from="emergency")

    assert found["EosStorageDegraded"]["labels"]["severity"] == "warning"
    assert found["EosStorageEmergency"]["labels"]["severity"] == "critical"
    assert level_rules(critical_from="degrade")["EosStorageDegraded"]["labels"]["severity"] == (
        "critical"
    )


def test_every_level_waits_five_minutes_by_default():
    found = level_rules()

    assert {found[rules.level_alert(level)]["for"] for level in thresholds.THRESHOLD_LEVELS} == {
        "5m"
    }


def test_for_may_be_set_per_level_either_spelling():
    found = level_rules(**{"for": {"critical": 60, "degrade": 120}})

    assert found["EosStorageCritical"]["for"] == "1m"
    assert found["EosStorageDegraded"]["for"] == "2m"
    assert found["EosStorageWarning"]["for"] == "5m"


def test_a_for_of_zero_fires_at_once():
    found = level_rules(**{"for": 0})

    assert "for" not in found["EosStorageWarning"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"for": -1}, r"eos:observe:rules:for: -1 must be >= 0"),
        ({"for": {"warning": -5}}, r"eos:observe:rules:for:warning: -5 must be >= 0"),
        ({"for": {"urgent": 60}}, r"eos:observe:rules:for: unknown level 'urgent'; expected one"),
        ({"for": {"degrade": 60, "degraded": 60}}, r"for: degraded is given twice"),
        ({"for": "5m"}, r"eos:observe:rules:for: '5m' is not a number"),
        ({"critical_from": "panic"}, r"critical_from: unknown level 'panic'"),
        ({"forecast_for": -1}, r"forecast_for: -1 must be >= 0"),
        ({"time_to_full": {"soon": 60}}, r"time_to_full: .* must map warning and critical"),
        ({"time_to_full": {"critical": -60}}, r"time_to_full:critical: -60 must be >= 0"),
        ({"stale_after": 0}, r"stale_after: 0 must be >= 1"),
        ({"inodes": "yes"}, r"inodes: 'yes' is not true/false"),
        ({"fire": True}, r"eos:observe:rules: unknown option\(s\) fire"),
    ],
)
def test_bad_settings_name_what_is_wrong(given, message):
    with pytest.raises(errors.InvalidConfig, match=message):
        rules.rules_file(given)


def test_the_forecast_uses_the_beacon_horizons():
    found = level_rules()

    assert found["EosStorageForecastWarning"]["expr"] == (
        f"eos_storage_time_to_full_seconds < {watch.DEFAULTS['time_to_full']['warning']}"
    )
    assert found["EosStorageForecastCritical"]["expr"] == (
        f"eos_storage_time_to_full_seconds < {watch.DEFAULTS['time_to_full']['critical']}"
    )
    assert found["EosStorageForecastCritical"]["labels"] == {
        "severity": "critical",
        "level": "critical",
    }
    assert found["EosStorageForecastWarning"]["for"] == "10m"


def test_a_horizon_may_be_set_as_the_beacon_sets_it():
    found = level_rules(time_to_full={"critical": 3600})

    assert found["EosStorageForecastCritical"]["expr"].endswith("< 3600")
    assert found["EosStorageForecastWarning"]["expr"].endswith("< 86400")


def test_metrics_are_stale_after_three_runs_of_the_slowest_scale():
    slowest = max(policy["monitoring_interval"] for policy in registry.SCALE_POLICIES.values())

    rule = level_rules()[rules.STALE_ALERT]

    assert rule["expr"] == f"time() - eos_storage_last_run_timestamp_seconds > {3 * slowest}"
    assert "for" not in rule
    assert level_rules(stale_after=120)[rules.STALE_ALERT]["expr"].endswith("> 120")


def test_a_silent_exporter_is_its_scrape_job_down():
    rule = level_rules()[rules.EXPORTER_DOWN_ALERT]

    assert rule["expr"] == f'up{{job="{targets.JOB}"}} == 0'
    assert rule["for"] == "5m"


# --- promtool ---------------------------------------------------------------------------------


def statvfs_at(used_blocks, used_inodes):
    def statvfs(path):
        return SimpleNamespace(
            f_blocks=BLOCKS, f_bfree=BLOCKS - used_blocks, f_bavail=BLOCKS - used_blocks,
            f_files=BLOCKS, f_ffree=BLOCKS - used_inodes, f_frsize=4096, f_flag=0,
        )  # fmt: skip

    return statvfs


def limit_of(level):
    """The threshold of ``level`` the node resolves for ``/`` from EOS_CONFIG."""
    return thresholds.Resolver(support_layers.minion(EOS_CONFIG)).for_mount("/").values[level]


def alert_labels(mount, report, **rule_labels):
    """What a firing alert carries: the series' labels and the rule's own."""
    return {**dict(metrics.mount_labels(mount, report, MINION)), **TARGET_LABELS, **rule_labels}


def analyzed(tmp_path, percent, inodes):
    """The analyzer's report of ``/`` at ``percent`` used (of space, or of inodes)."""
    used = round(percent * BLOCKS / 100)
    statvfs = statvfs_at(100, used) if inodes else statvfs_at(used, 100)
    layers = support_layers.minion(EOS_CONFIG)
    return analyzer.analyze(layers, str(tmp_path), mount="/", record=False, statvfs=statvfs)


def textfile_series(before, after):
    """
    promtool input series: every per-mount sample of the textfile, at ``before``'s values for
    RUNS_BELOW runs, then at ``after``'s (same mounts, so the same series).
    """
    values = {}
    for position, reports in enumerate((before, after)):
        for sample in metrics.samples(reports, minion_id=MINION):
            if sample.family is not metrics.LAST_RUN:
                values.setdefault((sample.family.name, sample.labels), [None, None])[position] = (
                    sample.value
                )
    return [
        {
            "series": series_name(name, dict(labels)),
            "values": f"{old!r}+0x{RUNS_BELOW - 1} {new!r}+0x{RUNS_AT}",
        }
        for (name, labels), (old, new) in values.items()
    ]


def series_name(name, labels):
    labels = {**labels, **TARGET_LABELS}
    inner = ",".join(
        f'{key}="{metrics.escape_label_value(value)}"' for key, value in labels.items()
    )
    return f"{name}{{{inner}}}"


def alert_checks(alertname, first_minute, labels):
    """The alert is not firing one evaluation before ``first_minute``, and is from it."""
    return [
        {"eval_time": f"{first_minute - STEP_MINUTES}m", "alertname": alertname, "exp_alerts": []},
        {
            "eval_time": f"{first_minute}m",
            "alertname": alertname,
            "exp_alerts": [{"exp_labels": labels}],
        },
    ]


def without_annotations(rules_file):
    # promtool compares annotations too; these tests are about when an alert fires, and
    # test_annotations_are_filled_in checks the text once.
    return {
        "groups": [
            {
                **group,
                "rules": [
                    {k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]
                ],
            }
            for group in rules_file["groups"]
        ]
    }


def promtool_test(promtool, tmp_path, series, checks, rules_file=None, annotations=False):
    rules_file = rules_file or rules.rules_file()
    rules_path = write_yaml(
        tmp_path / "eos.rules.yml", rules_file if annotations else without_annotations(rules_file)
    )
    run(promtool, "check", "rules", str(rules_path))
    test_path = write_yaml(
        tmp_path / "eos.test.yml",
        {
            "rule_files": [rules_path.name],
            "evaluation_interval": f"{STEP_MINUTES}m",
            "tests": [
                {"interval": f"{STEP_MINUTES}m", "input_series": series, "alert_rule_test": checks}
            ],
        },
    )
    run(promtool, "test", "rules", str(test_path))


def minutes(seconds):
    assert seconds % 60 == 0, seconds
    return seconds // 60


@pytest.mark.parametrize("inodes", [False, True], ids=["space", "inodes"])
@pytest.mark.parametrize("level", thresholds.THRESHOLD_LEVELS)
def test_a_level_fires_at_its_threshold_not_one_step_below(promtool, tmp_path, level, inodes):
    below = analyzed(tmp_path, round(limit_of(level) - 0.01, 2), inodes)
    at = analyzed(tmp_path, limit_of(level), inodes)
    # The node's own judgement: one step below is still the level under it.
    assert below["/"]["level"] == thresholds.LEVELS[thresholds.level_rank(level) - 1]
    assert at["/"]["level"] == level
    opts = rules.read_settings()
    severity = rules.severity(level, opts.critical_from)
    first = RUNS_BELOW * STEP_MINUTES + minutes(opts.level_for[level])

    promtool_test(
        promtool,
        tmp_path,
        textfile_series(below, at),
        alert_checks(
            rules.level_alert(level),
            first,
            alert_labels("/", at["/"], severity=severity, level=level),
        ),
    )


def test_a_level_fires_at_once_without_a_for(promtool, tmp_path):
    below = analyzed(tmp_path, limit_of("warning") - 0.01, False)
    at = analyzed(tmp_path, limit_of("warning"), False)
    labels = alert_labels("/", at["/"], severity="warning", level="warning")

    promtool_test(
        promtool,
        tmp_path,
        textfile_series(below, at),
        alert_checks("EosStorageWarning", RUNS_BELOW, labels),
        rules.rules_file({"for": 0}),
    )


def test_each_mount_is_judged_by_its_own_threshold(promtool, tmp_path):
    def report(warning):
        return {
            "device": "/dev/vda1",
            "fstype": "ext4",
            "usage_percent": 55.0,
            "free_bytes": 1,
            "inode_percent": 1.0,
            "level": "none",
            "thresholds": {**thresholds.profile("single"), "warning": warning},
        }

    # The same usage; only /var/lib/db has its warning threshold (lowered) under it.
    before = {"/": report(60.0), "/var/lib/db": report(60.0)}
    after = {"/": report(60.0), "/var/lib/db": report(55.0)}
    labels = alert_labels("/var/lib/db", after["/var/lib/db"], severity="warning", level="warning")
    first = RUNS_BELOW * STEP_MINUTES + minutes(rules.read_settings().level_for["warning"])

    promtool_test(
        promtool,
        tmp_path,
        textfile_series(before, after),
        alert_checks("EosStorageWarning", first, labels),
    )


@pytest.mark.parametrize("level", rules.FORECAST_LEVELS)
def test_a_forecast_fires_under_its_horizon_not_at_it(promtool, tmp_path, level):
    horizon = watch.DEFAULTS["time_to_full"][level]
    beacon = watch.settings({})
    # The beacon's judgement: a forecast exactly at the horizon raises nothing yet.
    assert watch.time_to_full_level(horizon, beacon) != level
    assert watch.time_to_full_level(horizon - 1, beacon) == level

    def reports(seconds):
        return {
            "/": {
                "device": "/dev/vda1",
                "fstype": "ext4",
                "usage_percent": 10.0,
                "free_bytes": 1,
                "inode_percent": 1.0,
                "level": "none",
                "time_to_full_seconds": float(seconds),
            }
        }

    at, under = reports(horizon), reports(horizon - 1)
    labels = alert_labels("/", at["/"], severity=level, level=level)
    first = RUNS_BELOW * STEP_MINUTES + minutes(rules.read_settings().forecast_for)

    promtool_test(
        promtool,
        tmp_path,
        textfile_series(at, under),
        alert_checks(rules.forecast_alert(level), first, labels),
    )


def test_metrics_go_stale_once_the_last_run_is_older_than_stale_after(promtool, tmp_path):
    stale_after = rules.read_settings().stale_after
    last_run = (RUNS_BELOW - 1) * STEP_MINUTES * 60
    # The exporter keeps serving the last file: the timestamp stops moving, the series stays.
    series = [
        {
            "series": series_name(metrics.LAST_RUN.name, {"minion": MINION}),
            "values": f"0+{STEP_MINUTES * 60}x{RUNS_BELOW - 1} {last_run}+0x{RUNS_AT}",
        }
    ]
    labels = {"minion": MINION, **TARGET_LABELS, "severity": "warning"}
    # Exactly stale_after old is not yet stale; the next evaluation is.
    first = minutes(last_run + stale_after) + STEP_MINUTES

    promtool_test(promtool, tmp_path, series, alert_checks(rules.STALE_ALERT, first, labels))


def test_a_silent_exporter_fires_after_its_for(promtool, tmp_path):
    series = [{"series": series_name("up", {}), "values": f"1+0x{RUNS_BELOW - 1} 0+0x{RUNS_AT}"}]
    labels = {**TARGET_LABELS, "severity": "warning"}
    first = RUNS_BELOW * STEP_MINUTES + minutes(rules.read_settings().exporter_down_for)

    promtool_test(
        promtool, tmp_path, series, alert_checks(rules.EXPORTER_DOWN_ALERT, first, labels)
    )


def test_the_rules_file_passes_promtool_check_with_every_setting_changed(promtool, tmp_path):
    changed = {
        "for": {"warning": 600, "critical": 0},
        "forecast_for": 0,
        "time_to_full": {"warning": 43200, "critical": 3600},
        "stale_after": 300,
        "exporter_down_for": 60,
        "inodes": False,
        "critical_from": "cleanup",
    }
    path = write_yaml(tmp_path / "eos.rules.yml", rules.rules_file(changed))

    result = run(promtool, "check", "rules", str(path))

    assert f"{len(level_rules(**changed))} rules found" in result.stdout


def test_annotations_are_filled_in(promtool, tmp_path):
    below, at = (
        analyzed(tmp_path, limit_of("warning") - 0.01, False),
        analyzed(tmp_path, limit_of("warning"), False),
    )
    expected = {
        "exp_labels": alert_labels("/", at["/"], severity="warning", level="warning"),
        "exp_annotations": {
            "summary": f"/ on {MINION} is at the warning level",
            "description": (
                "72.5% in use, at or above the warning threshold of the mount; "
                "EOS responds: monitor."
            ),
        },
    }
    check = {"eval_time": f"{RUNS_BELOW + 5}m", "alertname": "EosStorageWarning"}

    promtool_test(
        promtool,
        tmp_path,
        textfile_series(below, at),
        [{**check, "exp_alerts": [expected]}],
        annotations=True,
    )
