"""python -m saltext.eos.replay: reading CSV and Prometheus exports, and what it prints."""

import json
import subprocess
import sys

import pytest

from saltext.eos import replay

GIB = 1024**3
STEP = 120


def runaway_rows(calm_days=2):
    """Calm at 80 % of 100 GiB, then 10 GiB/h: (t, used)."""
    rows = [(t, 80 * GIB) for t in range(0, calm_days * 86400, STEP)]
    start = rows[-1][0]
    rows += [(start + n * STEP, 80 * GIB + 10 * GIB * n * STEP / 3600) for n in range(1, 30)]
    return rows


def as_csv(rows):
    return "timestamp,used_bytes\n" + "".join(f"{t},{used}\n" for t, used in rows)


def prometheus(series):
    """A range-query answer: series is [(metric labels, [(t, value)])]."""
    result = [
        {"metric": labels, "values": [[t, str(value)] for t, value in values]}
        for labels, values in series
    ]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def test_csv_is_read_with_the_given_capacity():
    samples, total = replay.read_history(as_csv([(0, 5), (60, 7)]), total_bytes=100)
    assert samples == [(0.0, 5.0), (60.0, 7.0)]
    assert total == 100


@pytest.mark.parametrize(
    ("text", "total", "message"),
    [
        ("time,used\n1,2\n", 100, "timestamp,used_bytes"),
        ("timestamp,used_bytes\n", 100, "no samples"),
        ("timestamp,used_bytes\n1,lots\n", 100, "line 2"),
        ("timestamp,used_bytes\n1,2\n", None, "--total-bytes"),
    ],
)
def test_bad_csv_names_what_is_wrong(text, total, message):
    with pytest.raises(replay.ReplayInputError, match=message):
        replay.read_history(text, total_bytes=total)


def test_prometheus_avail_and_size_give_used_and_capacity():
    labels = {"mountpoint": "/var", "instance": "web-1:9100"}
    text = prometheus(
        [
            ({"__name__": replay.AVAIL, **labels}, [(0, 60), (60, 50)]),
            ({"__name__": replay.SIZE, **labels}, [(0, 100), (60, 100)]),
        ]
    )

    samples, total = replay.read_history(text)

    assert samples == [(0.0, 40.0), (60.0, 50.0)]
    assert total == 100


def test_a_prometheus_export_of_several_mounts_needs_a_mountpoint():
    text = prometheus(
        [
            ({"__name__": replay.AVAIL, "mountpoint": "/"}, [(0, 60)]),
            ({"__name__": replay.AVAIL, "mountpoint": "/var"}, [(0, 10)]),
            ({"__name__": replay.SIZE, "mountpoint": "/"}, [(0, 100)]),
            ({"__name__": replay.SIZE, "mountpoint": "/var"}, [(0, 50)]),
        ]
    )
    with pytest.raises(replay.ReplayInputError, match="--mountpoint"):
        replay.read_history(text)

    samples, total = replay.read_history(text, mountpoint="/var")
    assert (samples, total) == ([(0.0, 40.0)], 50)


def test_avail_alone_needs_the_capacity():
    text = prometheus([({"__name__": replay.AVAIL}, [(0, 60)])])
    with pytest.raises(replay.ReplayInputError, match="--total-bytes"):
        replay.read_history(text)
    assert replay.read_history(text, total_bytes=100) == ([(0.0, 40.0)], 100)


def test_the_cli_prints_when_the_alarm_would_have_come(tmp_path):
    history = tmp_path / "usage.csv"
    history.write_text(as_csv(runaway_rows()))

    ret = subprocess.run(
        [sys.executable, "-m", "saltext.eos.replay", str(history), "--total-bytes",
         str(100 * GIB), "--every", "120"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert ret.returncode == 0, ret.stderr
    changes = ret.stdout.split("forecast level changes:")[1].split("at the last sample:")[0]
    levels = [line.split()[2] for line in changes.strip().splitlines()]
    assert levels[0] == "none"
    assert "critical" in levels
    assert "rate-change" in ret.stdout


def test_the_cli_says_why_it_cannot_read_a_file(tmp_path):
    history = tmp_path / "usage.csv"
    history.write_text("when,how much\n1,2\n")

    ret = subprocess.run(
        [sys.executable, "-m", "saltext.eos.replay", str(history), "--total-bytes", "100"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert ret.returncode == 2
    assert "timestamp,used_bytes" in ret.stderr
