"""Node checkpoints over temporary trees: take, list, find, restore and prune. No Salt."""

import os
import re
import stat

import pytest
import salt.utils.yaml

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils.cluster import checkpoint
from saltext.eos.utils.cluster.checkpoint import CheckpointError
from saltext.eos.utils.cluster.checkpoint import Tree

ID_SHAPE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-(?P<label>.+)$")


class Clock:
    def __init__(self, now=1_764_103_501.123):
        self.now = now

    def __call__(self):
        return self.now

    def tick(self, seconds=1.0):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "cache" / "checkpoints")


@pytest.fixture
def node(tmp_path):
    """An EOS config dir with a subdirectory, and a minion.d with EOS's and others' files."""
    config_dir = tmp_path / "etc" / "eos"
    (config_dir / "roles").mkdir(parents=True)
    write(config_dir / "eos.yaml", "cluster: prod\n", 0o640)
    write(config_dir / "roles" / "edge.yaml", "haproxy: on\n", 0o600)
    include_dir = tmp_path / "etc" / "salt" / "minion.d"
    include_dir.mkdir(parents=True)
    write(include_dir / "eos-storage.conf", "eos: {thresholds: {warning: 60}}\n")
    write(include_dir / "beacons.conf", "beacons: {eos_storage: [{interval: 60}]}\n")
    write(include_dir / "master.conf", "master: salt.example\n")

    class Node:
        config = config_dir
        include = include_dir
        trees = checkpoint.managed_trees(str(config_dir), str(include_dir))

    return Node


def write(path, text, mode=0o644):
    path.write_text(text)
    path.chmod(mode)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def entries(store):
    return sorted(os.listdir(store))


def blob_of(store, manifest, path):
    entry = next(entry for entry in manifest["files"] if entry["path"] == str(path))
    return os.path.join(store, manifest["id"], checkpoint.FILES_DIR, entry["blob"])


# --- take and restore ----------------------------------------------------------------------


def test_rollback_puts_back_changed_deleted_and_created_files(node, store, clock):
    taken = checkpoint.take(store, "join-web-3", node.trees, clock=clock)
    assert set(taken["files"]) == {
        str(node.config / "eos.yaml"),
        str(node.config / "roles" / "edge.yaml"),
        str(node.include / "beacons.conf"),
        str(node.include / "eos-storage.conf"),
    }

    write(node.config / "eos.yaml", "cluster: broken\n", 0o666)
    (node.config / "roles" / "edge.yaml").unlink()
    write(node.config / "added.yaml", "new: true\n")
    (node.config / "roles" / "added").mkdir()
    write(node.config / "roles" / "added" / "deep.yaml", "new: true\n")
    write(node.include / "eos-extra.conf", "eos: {}\n")
    (node.include / "beacons.conf").unlink()

    outcome = checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"
    assert mode_of(node.config / "eos.yaml") == 0o640
    assert (node.config / "roles" / "edge.yaml").read_text() == "haproxy: on\n"
    assert mode_of(node.config / "roles" / "edge.yaml") == 0o600
    assert (node.include / "beacons.conf").read_text() == (
        "beacons: {eos_storage: [{interval: 60}]}\n"
    )
    assert not (node.config / "added.yaml").exists()
    assert not (node.config / "roles" / "added" / "deep.yaml").exists()
    assert not (node.include / "eos-extra.conf").exists()
    assert sorted(outcome["restored"]) == sorted(
        [
            str(node.config / "eos.yaml"),
            str(node.config / "roles" / "edge.yaml"),
            str(node.include / "beacons.conf"),
        ]
    )
    assert sorted(outcome["removed"]) == sorted(
        [
            str(node.config / "added.yaml"),
            str(node.config / "roles" / "added" / "deep.yaml"),
            str(node.include / "eos-extra.conf"),
        ]
    )
    assert outcome["unchanged"] == [str(node.include / "eos-storage.conf")]
    # No temporary file of the atomic replacement is left beside its target.
    assert not [name for name in os.listdir(node.config) if name.startswith(".eos-restore-")]


def test_files_outside_the_patterns_are_neither_saved_nor_touched(node, store, clock):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    assert str(node.include / "master.conf") not in taken["files"]

    write(node.include / "master.conf", "master: elsewhere\n")
    write(node.include / "schedule.conf", "schedule: {}\n")
    checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert (node.include / "master.conf").read_text() == "master: elsewhere\n"
    assert (node.include / "schedule.conf").read_text() == "schedule: {}\n"


def test_a_mode_change_alone_is_restored(node, store, clock):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    (node.config / "eos.yaml").chmod(0o644)

    outcome = checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert outcome["restored"] == [str(node.config / "eos.yaml")]
    assert mode_of(node.config / "eos.yaml") == 0o640


def test_restore_when_nothing_changed_reports_unchanged_and_rewrites_nothing(node, store, clock):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    inodes = {path: os.stat(path).st_ino for path in taken["files"]}

    outcome = checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert outcome["restored"] == []
    assert outcome["removed"] == []
    assert sorted(outcome["unchanged"]) == sorted(taken["files"])
    assert {path: os.stat(path).st_ino for path in taken["files"]} == inodes


@pytest.mark.parametrize("recursive", [True, False])
def test_recursive_trees_own_subdirectories_and_flat_ones_do_not(tmp_path, store, clock, recursive):
    top = tmp_path / "conf"
    (top / "sub").mkdir(parents=True)
    write(top / "top.conf", "top\n")
    write(top / "sub" / "inner.conf", "inner\n")
    write(top / "notes.txt", "not owned\n")
    tree = Tree(str(top), ("*.conf",), recursive=recursive)

    taken = checkpoint.take(store, "tree", [tree], clock=clock)
    write(top / "sub" / "inner.conf", "changed\n")
    write(top / "sub" / "created.conf", "created\n")
    write(top / "notes.txt", "still not owned\n")
    checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert (top / "notes.txt").read_text() == "still not owned\n"
    if recursive:
        assert taken["files"] == [str(top / "top.conf"), str(top / "sub" / "inner.conf")]
        assert (top / "sub" / "inner.conf").read_text() == "inner\n"
        assert not (top / "sub" / "created.conf").exists()
    else:
        assert taken["files"] == [str(top / "top.conf")]
        assert (top / "sub" / "inner.conf").read_text() == "changed\n"
        assert (top / "sub" / "created.conf").read_text() == "created\n"


def test_symlinks_are_neither_followed_nor_saved(node, store, clock, tmp_path):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    write(outside / "precious.db", "keep me\n")
    write(outside / "dir" / "inner.yaml", "keep me too\n")
    (node.config / "link.yaml").symlink_to(outside / "precious.db")
    (node.config / "linked-dir").symlink_to(outside / "dir")
    (node.include / "eos-link.conf").symlink_to(outside / "precious.db")

    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    assert not [path for path in taken["files"] if "link" in os.path.relpath(path, tmp_path)]

    write(outside / "precious.db", "changed by its owner\n")
    write(outside / "dir" / "inner.yaml", "changed by its owner\n")
    outcome = checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert (outside / "precious.db").read_text() == "changed by its owner\n"
    assert (outside / "dir" / "inner.yaml").read_text() == "changed by its owner\n"
    assert (node.config / "link.yaml").is_symlink()
    assert (node.include / "eos-link.conf").is_symlink()
    assert outcome["removed"] == []


def test_a_saved_file_turned_into_a_symlink_comes_back_as_the_file(node, store, clock, tmp_path):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    # Same content and mode, but now a link to a file someone else owns.
    target = tmp_path / "elsewhere.yaml"
    write(target, "cluster: prod\n", 0o640)
    (node.config / "eos.yaml").unlink()
    (node.config / "eos.yaml").symlink_to(target)

    outcome = checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert str(node.config / "eos.yaml") in outcome["restored"]
    assert not (node.config / "eos.yaml").is_symlink()
    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"
    assert target.read_text() == "cluster: prod\n"


def test_a_missing_tree_is_an_empty_tree(tmp_path, store, clock):
    absent = tmp_path / "not-yet"
    taken = checkpoint.take(store, "before", [Tree(str(absent))], clock=clock)
    assert taken["files"] == []

    absent.mkdir()
    write(absent / "created.conf", "later\n")
    outcome = checkpoint.restore(store, checkpoint.find(store, taken["id"]))

    assert outcome["removed"] == [str(absent / "created.conf")]
    assert not (absent / "created.conf").exists()


def test_services_are_recorded_as_given(node, store, clock):
    services = {
        "nginx": {"active": True, "enabled": True},
        "haproxy": {"active": False, "enabled": True},
    }
    taken = checkpoint.take(store, "join", node.trees, services, clock=clock)

    assert taken["services"] == services
    assert checkpoint.find(store, taken["id"])["services"] == services


# --- ids, labels, listing and pruning --------------------------------------------------------


def test_ids_sort_by_age_and_carry_the_label(node, store, clock):
    taken = []
    for label in ("zeta", "alpha", "mid", "alpha"):
        taken.append(checkpoint.take(store, label, node.trees, clock=clock)["id"])
        clock.tick(0.004)  # milliseconds apart: the id keeps them in order
    clock.tick(3600 * 24 * 40)  # and across a month boundary
    taken.append(checkpoint.take(store, "later", node.trees, clock=clock)["id"])

    listed = checkpoint.checkpoints(store)

    assert [item["id"] for item in listed] == list(reversed(taken))
    assert [item["label"] for item in listed] == ["later", "alpha", "mid", "alpha", "zeta"]
    for item in listed:
        assert ID_SHAPE.match(item["id"]).group("label") == item["label"]
    assert [item["created_at"] for item in listed] == sorted(
        (item["created_at"] for item in listed), reverse=True
    )
    assert len(set(taken)) == len(taken)


@pytest.mark.parametrize(
    "label",
    [
        "",
        "-starts-with-dash",
        ".hidden",
        "with space",
        "a/b",
        "../escape",
        "semi;colon",
        "x" * 101,
        "trailing-newline\n",
        None,
        42,
    ],
)
def test_bad_labels_are_refused_naming_the_label(node, store, clock, label):
    with pytest.raises(CheckpointError) as err:
        checkpoint.take(store, label, node.trees, clock=clock)

    assert repr(label) in str(err.value)
    assert checkpoint.checkpoints(store) == []
    assert not os.path.isdir(store) or entries(store) == []


@pytest.mark.parametrize("label", ["a", "join-web-3", "before_upgrade.2", "ops@night", "x" * 100])
def test_good_labels_are_accepted(node, store, clock, label):
    assert checkpoint.take(store, label, node.trees, clock=clock)["label"] == label


def test_only_the_newest_ten_are_kept(node, store, clock):
    taken = []
    for number in range(checkpoint.KEEP + 3):
        taken.append(checkpoint.take(store, f"n{number}", node.trees, clock=clock)["id"])
        clock.tick()

    listed = [item["id"] for item in checkpoint.checkpoints(store)]

    assert checkpoint.KEEP == 10
    assert listed == list(reversed(taken[-10:]))
    assert entries(store) == sorted(taken[-10:])


def test_a_leftover_partial_checkpoint_is_ignored_then_pruned(node, store, clock):
    taken = checkpoint.take(store, "real", node.trees, clock=clock)
    # An interrupted take: a complete-looking manifest under the temporary name.
    partial = os.path.join(store, checkpoint.TEMP_PREFIX + "interrupted")
    os.makedirs(os.path.join(partial, checkpoint.FILES_DIR))
    with open(os.path.join(partial, checkpoint.MANIFEST), "w", encoding="utf-8") as handle:
        handle.write('{"id": "99991231T235959.999Z-half", "label": "half"}')

    assert [item["id"] for item in checkpoint.checkpoints(store)] == [taken["id"]]
    assert checkpoint.find(store)["id"] == taken["id"]
    with pytest.raises(CheckpointError, match="half"):
        checkpoint.find(store, label="half")

    checkpoint.prune(store)

    assert entries(store) == [taken["id"]]


def test_a_new_take_clears_leftovers(node, store, clock):
    os.makedirs(os.path.join(store, checkpoint.TEMP_PREFIX + "old"))
    taken = checkpoint.take(store, "next", node.trees, clock=clock)

    assert entries(store) == [taken["id"]]


def test_find_by_id_by_label_and_newest(node, store, clock):
    first = checkpoint.take(store, "before-upgrade", node.trees, clock=clock)
    clock.tick()
    second = checkpoint.take(store, "join", node.trees, clock=clock)
    clock.tick()
    third = checkpoint.take(store, "before-upgrade", node.trees, clock=clock)
    clock.tick()
    newest = checkpoint.take(store, "join", node.trees, clock=clock)

    assert checkpoint.find(store, first["id"])["id"] == first["id"]
    assert checkpoint.find(store, second["id"])["label"] == "join"
    assert checkpoint.find(store, label="before-upgrade")["id"] == third["id"]
    assert checkpoint.find(store)["id"] == newest["id"]


def test_find_unknown_id_label_or_nothing_names_what_is_missing(node, store, clock):
    with pytest.raises(CheckpointError, match="no checkpoint taken yet"):
        checkpoint.find(store)
    checkpoint.take(store, "join", node.trees, clock=clock)

    with pytest.raises(CheckpointError, match=re.escape("'20200101T000000.000Z-nope'")):
        checkpoint.find(store, "20200101T000000.000Z-nope")
    with pytest.raises(CheckpointError, match="labelled 'upgrade'"):
        checkpoint.find(store, label="upgrade")


def test_a_same_named_checkpoint_is_not_overwritten(node, store, clock):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    write(node.config / "eos.yaml", "cluster: changed\n", 0o640)

    with pytest.raises(CheckpointError, match="already exists"):
        checkpoint.take(store, "join", node.trees, clock=clock)

    assert entries(store) == [taken["id"]]
    checkpoint.restore(store, checkpoint.find(store, taken["id"]))
    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"


# --- a checkpoint that cannot be trusted -------------------------------------------------------


def test_a_damaged_copy_refuses_the_restore_and_changes_nothing(node, store, clock):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    manifest = checkpoint.find(store, taken["id"])
    changed = {
        node.config / "eos.yaml": "cluster: changed\n",
        node.config / "roles" / "edge.yaml": "haproxy: off\n",
        node.include / "eos-storage.conf": "eos: {}\n",
    }
    for path, text in changed.items():
        write(path, text)
    write(node.config / "created.yaml", "new\n")
    # The copy of the last file restored is the damaged one: no earlier file may be touched.
    last = manifest["files"][-1]["path"]
    with open(blob_of(store, manifest, last), "ab") as blob:
        blob.write(b"#")

    with pytest.raises(CheckpointError, match="damaged") as err:
        checkpoint.restore(store, manifest)

    assert last in str(err.value)
    for path, text in changed.items():
        assert path.read_text() == text
        assert mode_of(path) == 0o644
    assert (node.config / "created.yaml").read_text() == "new\n"


def test_a_missing_copy_refuses_the_restore(node, store, clock):
    taken = checkpoint.take(store, "join", node.trees, clock=clock)
    manifest = checkpoint.find(store, taken["id"])
    write(node.config / "eos.yaml", "cluster: changed\n")
    os.unlink(blob_of(store, manifest, node.include / "beacons.conf"))

    with pytest.raises(CheckpointError, match="unreadable"):
        checkpoint.restore(store, manifest)

    assert (node.config / "eos.yaml").read_text() == "cluster: changed\n"


def test_too_many_files_are_refused_and_leave_nothing(tmp_path, store, clock, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_FILES", 3)
    top = tmp_path / "conf"
    top.mkdir()
    for number in range(3):
        write(top / f"{number}.conf", "x\n")
    checkpoint.take(store, "three", [Tree(str(top))], clock=clock)
    clock.tick()
    write(top / "3.conf", "x\n")

    with pytest.raises(CheckpointError, match=f"more than 3 files under {re.escape(str(top))}"):
        checkpoint.take(store, "four", [Tree(str(top))], clock=clock)

    assert [item["label"] for item in checkpoint.checkpoints(store)] == ["three"]
    assert len(entries(store)) == 1


def test_too_big_a_file_is_refused_and_leaves_nothing(tmp_path, store, clock, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_FILE_BYTES", 10)
    top = tmp_path / "conf"
    top.mkdir()
    write(top / "fits.conf", "x" * 10)
    checkpoint.take(store, "fits", [Tree(str(top))], clock=clock)
    clock.tick()
    write(top / "big.conf", "x" * 11)

    with pytest.raises(CheckpointError) as err:
        checkpoint.take(store, "big", [Tree(str(top))], clock=clock)

    assert str(top / "big.conf") in str(err.value)
    assert "11 bytes" in str(err.value)
    assert [item["label"] for item in checkpoint.checkpoints(store)] == ["fits"]
    assert len(entries(store)) == 1


# --- which services a node checkpoint records ------------------------------------------------

DEFAULTS = {
    "edge": {"packages": ["nginx"], "services": ["nginx", "haproxy"]},
    "data": {"services": ["postgresql", "redis-server"]},
    "app": {"services": []},
    "observe": {"packages": ["prometheus"]},
    "os_family": {
        "RedHat": {"data": {"services": ["postgresql", "redis"]}, "edge": {"packages": []}},
        # Shaped like a role: must still never count as one.
        "services": ["not-a-service"],
    },
}


def test_role_services_are_every_roles_services():
    assert checkpoint.role_services(DEFAULTS) == ["haproxy", "nginx", "postgresql", "redis-server"]


def test_role_services_take_the_os_family_replacements():
    assert checkpoint.role_services(DEFAULTS, "RedHat") == [
        "haproxy",
        "nginx",
        "postgresql",
        "redis",
    ]
    assert checkpoint.role_services(DEFAULTS, "Debian") == checkpoint.role_services(DEFAULTS)


def test_site_overrides_replace_the_list_of_their_role():
    overrides = {"edge": {"services": ["caddy"]}, "app": {"services": ["gunicorn"]}}

    found = checkpoint.role_services(DEFAULTS, "RedHat", overrides)

    assert found == ["caddy", "gunicorn", "postgresql", "redis"]


def test_an_override_without_services_keeps_the_lower_list():
    overrides = {"data": {"packages": ["postgresql-16"]}, "edge": {"services": None}}

    assert checkpoint.role_services(DEFAULTS, None, overrides) == ["postgresql", "redis-server"]


def test_role_services_of_the_packaged_defaults():
    with open(PACKAGE_ROOT / "roles" / "defaults.yaml", encoding="utf-8") as handle:
        defaults = salt.utils.yaml.safe_load(handle)

    debian = checkpoint.role_services(defaults, "Debian")
    redhat = checkpoint.role_services(defaults, "RedHat")

    assert {"nginx", "docker", "postgresql", "redis-server", "rabbitmq-server"} <= set(debian)
    assert {"redis", "node_exporter"} <= set(redhat)
    assert "redis-server" not in redhat
    assert "docker" not in redhat
