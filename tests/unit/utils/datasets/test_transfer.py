"""Transfers: the rsync command lines of each transport, and manifest verification."""

import os

import pytest

from saltext.eos.utils.datasets import transfer

SOURCE = transfer.Endpoint("data-3.example", "/srv/eos/datasets/orders")
STAGING = "/srv/eos/datasets/.eos-staging/orders"


def test_auto_picks_local_on_one_host_and_ssh_between_hosts():
    assert transfer.choose_transport("auto", "h1", "h1") == "local"
    assert transfer.choose_transport("auto", "h1", "h2") == "ssh"
    assert transfer.choose_transport("ssh", "h1", "h1") == "ssh"
    with pytest.raises(transfer.TransferError, match="transport: 'ftp'"):
        transfer.choose_transport("ftp", "h1", "h2")


def test_local_copies_contents_path_to_path_resumably():
    command = transfer.rsync_command(SOURCE, STAGING, "local")
    assert command[0] == "rsync"
    assert "--archive" in command
    assert "--delete" in command
    assert f"--partial-dir={transfer.PARTIAL_DIR}" in command
    assert command[-2:] == [SOURCE.path + "/", STAGING + "/"]
    assert not any(part.startswith("--rsh") or part.startswith("--bwlimit") for part in command)


def test_ssh_pulls_from_the_source_host_as_the_user_without_prompting():
    command = transfer.rsync_command(
        SOURCE, STAGING, "ssh", bwlimit_kbps=50000, ssh_user="eos", rsync="/opt/bin/rsync"
    )
    assert command[0] == "/opt/bin/rsync"
    assert "--bwlimit=50000" in command
    assert "--rsh=ssh -o BatchMode=yes" in command
    assert command[-2:] == [f"eos@data-3.example:{SOURCE.path}/", STAGING + "/"]


@pytest.mark.parametrize("bwlimit", [0, -5, 1.5, True, "100"])
def test_a_bad_bwlimit_is_named(bwlimit):
    with pytest.raises(transfer.TransferError, match="bwlimit_kbps"):
        transfer.rsync_command(SOURCE, STAGING, "local", bwlimit_kbps=bwlimit)


def test_relative_paths_are_refused():
    with pytest.raises(transfer.TransferError, match="source path: 'orders'"):
        transfer.rsync_command(transfer.Endpoint("h", "orders"), STAGING, "local")
    with pytest.raises(transfer.TransferError, match="staging path"):
        transfer.rsync_command(SOURCE, "staging", "local")


def make_tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a" * 1000)
    (root / "sub" / "b.bin").write_bytes(b"b" * 10)
    (root / "link").symlink_to("a.bin")
    return root


def test_manifest_lists_sizes_checksums_and_links_and_skips_partials(tmp_path):
    root = make_tree(tmp_path / "set")
    (root / transfer.PARTIAL_DIR).mkdir()
    (root / transfer.PARTIAL_DIR / "half").write_bytes(b"x")
    found = transfer.manifest(str(root))
    assert found["count"] == 3
    assert found["bytes"] == 1010
    assert found["files"]["link"] == {"link": "a.bin"}
    assert found["files"][os.path.join("sub", "b.bin")]["size"] == 10
    assert len(found["files"]["a.bin"]["sha256"]) == 64


def test_identical_trees_compare_clean(tmp_path):
    one = transfer.manifest(str(make_tree(tmp_path / "one")))
    two = transfer.manifest(str(make_tree(tmp_path / "two")))
    assert transfer.compare(one, two) == []


def test_a_missing_file_and_changed_bytes_of_the_same_size_are_found(tmp_path):
    source = transfer.manifest(str(make_tree(tmp_path / "one")))
    copy_root = make_tree(tmp_path / "two")
    (copy_root / "sub" / "b.bin").unlink()
    (copy_root / "a.bin").write_bytes(b"z" * 1000)
    problems = transfer.compare(source, transfer.manifest(str(copy_root)))
    assert problems[0] == "file count: source 3, copy 2"
    assert any("missing in the copy: sub/b.bin" in problem for problem in problems)
    assert any("differ in size or sha256: a.bin" in problem for problem in problems)


def test_many_differences_are_summarised():
    source = {"files": {f"f{n}": {"size": 1} for n in range(20)}, "count": 20}
    problems = transfer.compare(source, {"files": {}, "count": 0})
    assert problems[1].endswith("and 15 more")


def test_manifest_of_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(transfer.TransferError, match="is not a directory"):
        transfer.manifest(str(tmp_path / "nothing"))
