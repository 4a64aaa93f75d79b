"""Atomic file replacement: the old content or the new, never a half-written file."""

import os
import stat

import pytest

from saltext.eos.utils import atomic


def test_text_and_bytes_replace_the_file_with_the_given_mode(tmp_path):
    target = tmp_path / "role.yaml"
    target.write_text("old\n")
    atomic.write_file(str(target), "new ✓\n", 0o640)
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    atomic.write_file(str(target), b"\x00\x01", 0o600)
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["role.yaml"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.prom"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        atomic.write_file(str(target), 12345)  # neither str nor bytes
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.prom"]


def test_a_missing_directory_is_an_error_not_a_created_tree(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic.write_file(str(tmp_path / "absent" / "file"), "x")
    assert os.listdir(tmp_path) == []
