import pytest

from saltext.eos.utils import errors
from saltext.eos.utils.observe import targets


def record(node_id, status="active", roles=()):
    return {"id": node_id, "status": status, "roles": list(roles)}


def test_each_member_is_one_group_labelled_with_node_and_roles():
    records = [record("data-1", roles=["observe", "data"]), record("core-1", roles=["core"])]

    found = targets.target_groups(records, {"data-1": "10.0.0.5", "core-1": "core-1.example"})

    assert found.groups == [
        {"targets": ["core-1.example:9100"], "labels": {"node": "core-1", "roles": ",core,"}},
        {"targets": ["10.0.0.5:9100"], "labels": {"node": "data-1", "roles": ",data,observe,"}},
    ]
    assert found.without_address == ()


def test_only_members_are_scraped_an_unreachable_one_included():
    statuses = ["pending", "accepted", "active", "failed", "unreachable", "down", "drained"]
    records = [record(status, status=status) for status in statuses]

    found = targets.target_groups(records, {status: "10.0.0.1" for status in statuses})

    assert [group["labels"]["node"] for group in found.groups] == [
        "accepted",
        "active",
        "unreachable",
    ]


def test_a_member_without_an_address_is_left_out_and_reported():
    records = [record("n1"), record("n2"), record("n3", status="pending")]

    found = targets.target_groups(records, {"n1": "10.0.0.1"})

    assert [group["labels"]["node"] for group in found.groups] == ["n1"]
    assert found.without_address == ("n2",)


def test_a_node_without_roles_has_an_empty_roles_label():
    found = targets.target_groups([record("n1")], {"n1": "10.0.0.1"})

    assert found.groups[0]["labels"] == {"node": "n1", "roles": ""}


def test_the_exporter_port_is_a_setting():
    found = targets.target_groups(
        [record("n1")], {"n1": "10.0.0.1"}, settings={"node_exporter_port": 9200}
    )

    assert found.groups[0]["targets"] == ["10.0.0.1:9200"]


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("10.0.0.5", "10.0.0.5:9100"),
        ("10.0.0.5:9200", "10.0.0.5:9200"),
        ("node-1.example.org", "node-1.example.org:9100"),
        ("node-1:19100", "node-1:19100"),
        ("fd00::5", "[fd00::5]:9100"),
        ("[fd00::5]", "[fd00::5]:9100"),
        ("[fd00::5]:9200", "[fd00::5]:9200"),
    ],
)
def test_an_address_is_a_host_or_host_and_port(address, target):
    assert targets.host_port(address, 9100, "address of n1") == target


@pytest.mark.parametrize(
    "address",
    [
        "",
        "http://10.0.0.5",
        "10.0.0.5:",
        "10.0.0.5:0",
        "10.0.0.5:65536",
        "10.0.0.5:port",
        "host name",
        "-node",
        "[fd00::5",
        "[fd00::5]9100",
        "[not-v6]:9100",
        "fd00::zz",
        ["10.0.0.5"],
        None,
    ],
)
def test_anything_else_is_refused_naming_the_node(address):
    with pytest.raises(errors.InvalidInput, match=r"address of n1: .* is not a host or host:port"):
        targets.host_port(address, 9100, "address of n1")


def test_a_bad_address_fails_the_whole_generation():
    with pytest.raises(errors.InvalidInput, match="address of n2: 'bad host'"):
        targets.target_groups([record("n1"), record("n2")], {"n1": "10.0.0.1", "n2": "bad host"})


def test_addresses_must_be_a_mapping():
    with pytest.raises(errors.InvalidInput, match=r"addresses: .* is not a mapping"):
        targets.target_groups([record("n1")], ["10.0.0.1"])


@pytest.mark.parametrize("port", [0, 65536, 9100.5, "9100", True])
def test_a_bad_exporter_port_is_named(port):
    with pytest.raises(errors.InvalidConfig, match="eos:observe:targets:node_exporter_port"):
        targets.read_settings({"node_exporter_port": port})


def test_a_record_address_wins_over_the_mine():
    records = [
        {"id": "a", "status": "active", "address": "10.0.0.1"},
        {"id": "b", "status": "active"},
        {"id": "c", "status": "active"},
        {"id": "d", "status": "pending", "address": "10.0.0.4"},
    ]
    mine = {
        "a": {"eos_addresses": ["10.9.9.9"]},
        "b": {"eos_addresses": ["10.0.0.2", "10.0.0.3"]},
        "c": {"other": ["10.0.0.7"]},
    }
    assert targets.addresses(records, mine, "eos_addresses") == {"a": "10.0.0.1", "b": "10.0.0.2"}


@pytest.mark.parametrize(
    ("published", "address"),
    [
        ({"__data__": ["10.0.0.2"], "__saltmine_acl__": None, "allow_tgt": "*"}, "10.0.0.2"),
        ("10.0.0.2", "10.0.0.2"),
        ([], None),
        ([None, "", "10.0.0.2"], "10.0.0.2"),
        (["bad host!", "10.0.0.3"], "10.0.0.3"),
        (["bad host!"], None),
        (42, None),
    ],
)
def test_what_the_mine_holds_is_read_as_salt_stores_it(published, address):
    records = [{"id": "b", "status": "active"}]
    found = targets.addresses(records, {"b": {"eos_addresses": published}}, "eos_addresses")
    assert found.get("b") == address


def test_a_bad_operator_address_falls_back_to_the_mine():
    records = [{"id": "b", "status": "active", "address": "not an address"}]
    mine = {"b": {"eos_addresses": ["10.0.0.2"]}}
    assert targets.addresses(records, mine, "eos_addresses") == {"b": "10.0.0.2"}
