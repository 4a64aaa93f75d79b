import gzip
import hashlib
import os

import pytest
import salt.config

from saltext.eos import PACKAGE_ROOT
from saltext.eos.fileserver import eos as eos_fs

ROLE_SLS = b"eos-role:\n  test.nop\n"


@pytest.fixture
def master_opts(tmp_path):
    opts = salt.config.DEFAULT_MASTER_OPTS.copy()
    opts.update(
        {"cachedir": str(tmp_path / "cache"), "file_ignore_glob": [], "hash_type": "sha256"}
    )
    return opts


@pytest.fixture
def configure_loader_modules(master_opts):
    return {eos_fs: {"__opts__": master_opts}}


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package directory with the three SLS folders, pointed at by the backend."""
    root = tmp_path / "package"
    (root / "roles" / "data").mkdir(parents=True)
    (root / "roles" / "init.sls").write_bytes(ROLE_SLS)
    (root / "roles" / "data" / "init.sls").write_bytes(b"data-role:\n  test.nop\n")
    (root / "reactor").mkdir()
    (root / "reactor" / "storage_threshold.sls").write_bytes(b"reaction:\n  local.test.ping: []\n")
    (root / "orchestrate").mkdir()
    (root / "not_served.sls").write_bytes(b"outside the folders")
    (tmp_path / "secret").write_bytes(b"outside the package")
    monkeypatch.setattr(eos_fs, "SOURCE_DIR", str(root))
    return root


def test_find_file_returns_the_local_file_and_its_stat(package):
    found = eos_fs.find_file("eos/roles/init.sls")

    assert found["path"] == str(package / "roles" / "init.sls")
    assert found["rel"] == "eos/roles/init.sls"
    assert found["stat"][6] == len(ROLE_SLS)


def test_find_file_answers_in_every_saltenv(package):
    assert eos_fs.find_file("eos/roles/data/init.sls", saltenv="prod")["path"] == str(
        package / "roles" / "data" / "init.sls"
    )
    assert eos_fs.envs() == ["base"]


@pytest.mark.parametrize(
    "path",
    [
        "eos/roles/missing.sls",
        "eos/roles/data",
        "eos/roles",
        "roles/init.sls",
        "eos/not_served.sls",
        "eos/unknown/init.sls",
    ],
)
def test_find_file_misses_what_is_not_a_served_file(package, path):
    assert eos_fs.find_file(path) == {"path": "", "rel": ""}


@pytest.mark.parametrize(
    "path",
    [
        "eos/roles/../not_served.sls",
        "eos/roles/../../secret",
        "eos/roles/data/../init.sls",
        "eos/roles/./init.sls",
        "eos/roles//init.sls",
        "/eos/roles/init.sls",
        "eos/roles/init.sls\0.txt",
    ],
)
def test_find_file_rejects_paths_that_could_escape(package, path):
    assert eos_fs.find_file(path) == {"path": "", "rel": ""}


def test_symlinks_below_a_folder_are_never_followed(package, tmp_path):
    (package / "roles" / "leak.sls").symlink_to(tmp_path / "secret")
    (package / "roles" / "alias.sls").symlink_to(package / "roles" / "init.sls")
    (package / "reactor" / "outside").symlink_to(tmp_path, target_is_directory=True)

    for path in ("eos/roles/leak.sls", "eos/roles/alias.sls", "eos/reactor/outside/secret"):
        assert eos_fs.find_file(path)["path"] == ""
    listed = eos_fs.file_list({"saltenv": "base"})
    assert not [path for path in listed if "leak" in path or "alias" in path or "outside" in path]
    assert eos_fs.symlink_list({"saltenv": "base"}) == {}


def test_file_list_holds_every_served_file(package):
    assert eos_fs.file_list({"saltenv": "base"}) == [
        "eos/reactor/storage_threshold.sls",
        "eos/roles/data/init.sls",
        "eos/roles/init.sls",
    ]


def test_dir_list_and_empty_dirs(package):
    assert eos_fs.dir_list({"saltenv": "base"}) == [
        "eos",
        "eos/orchestrate",
        "eos/reactor",
        "eos/roles",
        "eos/roles/data",
    ]
    assert eos_fs.file_list_emptydirs({"saltenv": "base"}) == ["eos/orchestrate"]


def test_file_ignore_glob_hides_files(package, master_opts):
    master_opts["file_ignore_glob"] = ["*/data/*"]

    assert eos_fs.find_file("eos/roles/data/init.sls")["path"] == ""
    assert "eos/roles/data/init.sls" not in eos_fs.file_list({"saltenv": "base"})


@pytest.mark.parametrize("hash_type", ["sha256", "md5"])
def test_file_hash_matches_hashlib(package, master_opts, hash_type):
    master_opts["hash_type"] = hash_type
    load = {"path": "eos/roles/init.sls", "saltenv": "base"}

    result = eos_fs.file_hash(load, eos_fs.find_file(load["path"]))

    assert result == {"hash_type": hash_type, "hsum": hashlib.new(hash_type, ROLE_SLS).hexdigest()}


def test_file_hash_of_a_missing_file_is_empty(package):
    assert eos_fs.file_hash({"path": "eos/x.sls", "saltenv": "base"}, {"path": "", "rel": ""}) == {}


def test_serve_file_reads_chunks_from_the_requested_offset(package, master_opts):
    master_opts["file_buffer_size"] = 5
    fnd = eos_fs.find_file("eos/roles/init.sls")

    first = eos_fs.serve_file({"path": fnd["rel"], "saltenv": "base", "loc": 0}, fnd)
    second = eos_fs.serve_file({"path": fnd["rel"], "saltenv": "base", "loc": 5}, fnd)

    assert first == {"data": ROLE_SLS[:5], "dest": "eos/roles/init.sls"}
    assert second["data"] == ROLE_SLS[5:10]


def test_serve_file_compresses_on_request(package):
    fnd = eos_fs.find_file("eos/roles/init.sls")

    served = eos_fs.serve_file({"path": fnd["rel"], "saltenv": "base", "loc": 0, "gzip": 6}, fnd)

    assert served["gzip"] == 6
    assert gzip.decompress(served["data"]) == ROLE_SLS


def test_serve_file_ignores_a_forged_fnd(package, tmp_path):
    forged = {"path": str(tmp_path / "secret"), "rel": "eos/roles/../../secret"}

    served = eos_fs.serve_file({"path": forged["rel"], "saltenv": "base", "loc": 0}, forged)

    assert served == {"data": "", "dest": ""}


def test_the_real_package_folders_are_served_as_shipped():
    shipped = sorted(
        "/".join(("eos", *os.path.relpath(os.path.join(parent, name), PACKAGE_ROOT).split(os.sep)))
        for folder in eos_fs.FOLDERS
        for parent, _, names in os.walk(PACKAGE_ROOT / folder)
        for name in names
    )

    assert eos_fs.file_list({"saltenv": "base"}) == shipped
    for path in shipped:
        assert eos_fs.find_file(path)["path"] == str(PACKAGE_ROOT / path.split("/", 1)[1])
