"""
The REST API's registry reads through a real salt-master and salt-api: answered in the API
process, fresh after a runner's write, tagged for pollers, paged by cursor while nodes join,
and ``/health`` quick while readers keep every read worker busy.

One master for the module with file eauth: ``admin`` may run every runner the API uses,
``reader`` only the two read runners. Nodes are written as the master writes them: through
the runners (over the API or ``salt-run``) or, for the many-node tests, with the registry
code on the master's own cache. Tests build on each other, in file order.
"""

import statistics
import subprocess
import sys
import threading
import time

import pytest
from pytestshellutils.utils import ports

from saltext.eos.utils import api
from saltext.eos.utils.cluster import registry
from tests.support.eos_api import EosApiDaemon
from tests.support.eos_api import call
from tests.support.eos_api import login

ADMIN = ("admin", "admin-secret")
READER = ("reader", "reader-secret")
SEEDED = 600
PAGE = 37
READERS = 32
HEALTH_LIMIT_SECONDS = 0.050


@pytest.fixture(scope="module")
def api_port():
    return ports.get_unused_localhost_port()


@pytest.fixture(scope="module")
def master_config_overrides(api_port, tmp_path_factory):
    users = tmp_path_factory.mktemp("eauth") / "users.txt"
    users.write_text("".join(f"{user}:{password}\n" for user, password in (ADMIN, READER)))
    return {
        "eos_api": {"port": api_port},
        "netapi_enable_clients": ["runner"],
        "external_auth": {
            "file": {
                "^filename": str(users),
                "^filetype": "text",
                ADMIN[0]: [{"@runner": ["eos_cluster.*", "mine.get"]}],
                READER[0]: [{"@runner": ["eos_cluster.info", "eos_cluster.nodes"]}],
            }
        },
    }


@pytest.fixture(scope="module")
def base_url(master, api_port):
    factory = master.salt_api_daemon(factory_class=EosApiDaemon)
    with factory.started():
        yield f"http://127.0.0.1:{api_port}{api.PREFIX}"


@pytest.fixture(scope="module")
def admin_token(base_url):
    return login(base_url, ADMIN)


@pytest.fixture(scope="module")
def reader_token(base_url):
    return login(base_url, READER)


@pytest.fixture(scope="module")
def master_registry(master):
    """The registry on the master's cache, opened as the master's runners open it."""
    return registry.open_registry(master.config)


def preregister(base_url, token, node_id):
    reply = call(base_url, "POST", "/cluster/register", {"id": node_id}, token=token)
    assert reply.status == 201, reply
    return reply


def test_a_read_sees_a_write_made_through_a_runner_just_before(
    base_url, admin_token, reader_token, salt_run_cli
):
    before = call(base_url, "GET", "/cluster/info", token=reader_token)
    assert before.status == 200, before
    preregister(base_url, admin_token, "fresh-1")
    record = call(base_url, "GET", "/nodes/fresh-1", token=reader_token)
    assert (record.status, record.data["status"]) == (200, "pending")
    ret = salt_run_cli.run("eos_cluster.accept", "fresh-1")
    assert ret.returncode == 0, ret
    record = call(base_url, "GET", "/nodes/fresh-1", token=reader_token)
    assert record.data["status"] == "accepted"
    after = call(base_url, "GET", "/cluster/info", token=reader_token)
    assert after.data["nodes"]["accepted"] == before.data["nodes"]["accepted"] + 1


def test_if_none_match_gives_304_until_a_node_changes(base_url, admin_token, reader_token):
    first = call(base_url, "GET", "/nodes?limit=10", token=reader_token)
    tag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    for _ in range(3):
        again = call(
            base_url, "GET", "/nodes?limit=10", token=reader_token, headers={"If-None-Match": tag}
        )
        assert (again.status, again.raw, again.headers["ETag"]) == (304, b"", tag)
    preregister(base_url, admin_token, "fresh-2")
    changed = call(
        base_url, "GET", "/nodes?limit=10", token=reader_token, headers={"If-None-Match": tag}
    )
    assert changed.status == 200
    assert changed.headers["ETag"] != tag
    assert "fresh-2" in [record["id"] for record in changed.data["nodes"]]


def test_reads_start_no_job_on_the_master(base_url, reader_token, salt_run_cli):
    def read_jobs():
        ret = salt_run_cli.run("jobs.list_jobs", "search_function=eos_cluster.*")
        assert ret.returncode == 0, ret
        return {jid for jid, job in ret.data.items() if job.get("Function", "").startswith("eos_")}

    before = read_jobs()
    for path in ("/cluster/info", "/nodes", "/nodes/fresh-1"):
        assert call(base_url, "GET", path, token=reader_token).status == 200
    assert read_jobs() == before


def test_pages_give_every_node_once_while_nodes_are_added(base_url, reader_token, master_registry):
    for number in range(SEEDED):
        master_registry.ensure(f"seed-{number:04}", "seeded for the paging test")
    present = {record["id"] for record in master_registry.records()}
    adding = threading.Event()
    added = []

    def add_nodes():
        number = 0
        while not adding.is_set():
            # Before and after the point the pages reached, as nodes join in any order.
            for prefix in ("aaa", "seed-", "zzz"):
                node_id = f"{prefix}{number:04}-new"
                master_registry.ensure(node_id, "joined while paging")
                added.append(node_id)
            number += 1
            time.sleep(0.01)

    writer = threading.Thread(target=add_nodes)
    writer.start()
    try:
        seen, cursor = [], None
        while True:
            query = f"limit={PAGE}" + ("" if cursor is None else f"&cursor={cursor}")
            page = call(base_url, "GET", f"/nodes?{query}", token=reader_token)
            assert page.status == 200, page
            seen += [record["id"] for record in page.data["nodes"]]
            cursor = page.data["next_cursor"]
            if cursor is None:
                break
    finally:
        adding.set()
        writer.join(30)
    assert added, "nodes were added while the pages were read"
    assert len(seen) == len(set(seen)), "no node came twice"
    assert present <= set(seen), "every node present all along came"
    assert seen == sorted(seen)


def test_a_cursor_for_other_filters_is_400_naming_it(base_url, reader_token):
    page = call(base_url, "GET", "/nodes?limit=5", token=reader_token)
    cursor = page.data["next_cursor"]
    reply = call(base_url, "GET", f"/nodes?status=pending&cursor={cursor}", token=reader_token)
    assert reply.status == 400
    assert reply.error["field"] == "cursor"
    pending = call(base_url, "GET", "/nodes?status=pending", token=reader_token)
    assert {record["status"] for record in pending.data["nodes"]} == {"pending"}


# The readers run in a process of their own: in the test's process their threads would hold
# the interpreter lock the probe needs, and the probe would time the test, not the API.
READERS_SCRIPT = """
import http.client, sys, threading, time, urllib.parse
url, token, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
parts = urllib.parse.urlsplit(url)
statuses, deadline = [], time.monotonic() + seconds
def read():
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    while time.monotonic() < deadline:
        connection.request("GET", parts.path + "/nodes?limit=100", headers={"X-Auth-Token": token})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
threads = [threading.Thread(target=read) for _ in range(count)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(statuses), sorted(set(statuses)))
"""


def test_health_answers_within_50_ms_while_32_readers_run(base_url, reader_token):
    readers = subprocess.Popen(
        [sys.executable, "-c", READERS_SCRIPT, base_url, reader_token, str(READERS), "8"],
        stdout=subprocess.PIPE,
        text=True,
    )
    probes = []
    try:
        time.sleep(2)  # every reader is in flight
        for _ in range(40):
            began = time.perf_counter()
            reply = call(base_url, "GET", "/health")
            probes.append(time.perf_counter() - began)
            assert reply.status == 200, reply
            time.sleep(0.05)
    finally:
        output, _ = readers.communicate(timeout=60)
    answered, statuses = output.split(" ", 1)
    assert int(answered) > READERS and statuses.strip() == "[200]", output
    # The median, and all but the slowest two: the probe shares two cores with 32 readers and
    # the master, and the scheduler's choices are not the API's doing.
    slowest_kept = sorted(probes)[-3]
    assert statistics.median(probes) < HEALTH_LIMIT_SECONDS, probes
    assert slowest_kept < HEALTH_LIMIT_SECONDS, probes
