"""eos_storage through a real salt-master and salt-minion."""

import psutil


def test_analyze_through_master_matches_psutil(salt_cli, minion):
    ret = salt_cli.run("eos_storage.analyze", minion_tgt=minion.id)
    assert ret.returncode == 0, ret
    root = ret.data["/"]
    assert abs(root["usage_percent"] - psutil.disk_usage("/").percent) <= 1
    assert root["free_bytes"] > 0
    assert root["level"] in (
        "none",
        "warning",
        "compress",
        "cleanup",
        "degraded",
        "emergency",
        "critical",
    )


def test_outputter_renders_a_table(salt_cli, minion):
    ret = salt_cli.run("eos_storage.analyze", "--out=eos_storage", minion_tgt=minion.id)
    assert ret.returncode == 0, ret
    text = ret.stdout
    assert minion.id in text
    assert "MOUNT" in text
    assert any(line.strip().startswith("/ ") for line in text.splitlines())


def test_unknown_mount_is_a_clear_error(salt_cli, minion):
    ret = salt_cli.run("eos_storage.analyze", "mount=/no/such/mount", minion_tgt=minion.id)
    assert "is not a mount point" in str(ret.data) + ret.stdout
