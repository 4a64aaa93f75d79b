"""
Two masters sharing one registry: Salt's hot multi-master on one host.

Master A listens on 127.0.0.1 and master B on 127.0.0.2, on the same ports; they share the
master key pair (copied to B before its first start) and Salt's cache (one real
``redis-server``), and both run the README's master block (the join reactor and the
``eos_lifecycle`` engine). Four minions have ``master: [127.0.0.1, 127.0.0.2]``: each is
connected to both, so every registration reaches both masters and both race to record it.

Tests build on each other, in file order; the last one kills master A for good. Each prints
what it measured.
"""

import collections
import concurrent.futures
import contextlib
import itertools
import json
import pathlib
import shutil
import threading
import time

import psutil
import pytest
import salt.cache
from pytestshellutils.utils import ports
from saltfactories.utils import random_string

from saltext.eos.utils import api
from saltext.eos.utils.cluster import join as joins
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import wave as waves
from tests.support import servers
from tests.support.cluster import SMALL_CATALOGUE
from tests.support.cluster import join_master_block
from tests.support.cluster import minion_overrides
from tests.support.cluster import started_together
from tests.support.cluster import wait_for
from tests.support.cluster import write_hold_state
from tests.support.eos_api import EosApiDaemon
from tests.support.eos_api import call
from tests.support.eos_api import login

ADDRESSES = {"a": "127.0.0.1", "b": "127.0.0.2"}
OPERATOR = ("operator", "operator-secret")
# Small so that a join its master abandoned is taken over within the test; a join's steps
# each take seconds here, far below it.
LEASE_SECONDS = 45
PROBE_INTERVAL = 3
JOIN_TIMEOUT = 240
CATALOGUE = {
    **SMALL_CATALOGUE,
    "data": {**SMALL_CATALOGUE["data"], "count": {"min": 1, "share": 0.5}},
}

pytestmark = [pytest.mark.skip_if_binaries_missing("redis-server")]


@pytest.fixture(scope="module")
def redis_port():
    with servers.redis_server() as port:
        yield port


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("several-masters")
    for name in ("states", "pillar"):
        (root / name).mkdir()
    (root / "states" / "top.sls").write_text("base:\n  '*':\n    - eos.roles\n    - hold\n")
    write_hold_state(root)
    (root / "users.txt").write_text(f"{OPERATOR[0]}:{OPERATOR[1]}\n")
    (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - nodes\n")
    # Minions share this host: each keeps its EOS files apart; software is not installed.
    (root / "pillar" / "nodes.sls").write_text(
        "eos:\n"
        f"  config_dir: {root / 'nodes'}/{{{{ grains['id'] }}}}/eos\n"
        "  manage_software: false\n"
    )
    return root


def master_config(trees, redis_port, interface, shared_ports=None):
    return {
        **join_master_block(),
        **(shared_ports or {}),
        "interface": interface,
        # Each master serves the REST API; eauth tokens live in the shared cache too.
        "eos_api": {"port": ports.get_unused_localhost_port()},
        "netapi_enable_clients": ["runner"],
        "external_auth": {
            "file": {
                "^filename": str(trees / "users.txt"),
                "^filetype": "text",
                OPERATOR[0]: [{"@runner": ["eos_cluster.*"]}],
            }
        },
        "file_roots": {"base": [str(trees / "states")]},
        "pillar_roots": {"base": [str(trees / "pillar")]},
        # What the masters share besides the key pair (see share_keys): the cache.
        "cache": "redis",
        "cache.redis.host": "127.0.0.1",
        "cache.redis.port": redis_port,
        # Salt's key acceptance, on each master; EOS's own acceptance policy is eos:accept.
        "auto_accept": True,
        "eos": {
            "accept": {"auto": True},
            "roles": {"catalog": CATALOGUE},
            "join": {"lease_seconds": LEASE_SECONDS, "minion_wait": 120},
            # Nobody goes unreachable on a loaded test host: this module is about the joins.
            "lifecycle": {
                "grace_seconds": 600,
                "down_after_seconds": 600,
                "probe_interval_seconds": PROBE_INTERVAL,
                "probe_timeout_seconds": 2,
            },
        },
    }


@pytest.fixture(scope="module")
def masters(salt_factories, trees, redis_port):
    """{"a": factory, "b": factory}: master B on A's ports, at another loopback address."""
    first = salt_factories.salt_master_daemon(
        random_string("master-a-"), overrides=master_config(trees, redis_port, ADDRESSES["a"])
    )
    shared_ports = {key: first.config[key] for key in ("ret_port", "publish_port")}
    second = salt_factories.salt_master_daemon(
        random_string("master-b-"),
        overrides=master_config(trees, redis_port, ADDRESSES["b"], shared_ports),
    )
    with first.started():
        share_keys(first, second)
        with second.started():
            yield {"a": first, "b": second}


def share_keys(first, second):
    """
    What an operator copies to a second master before its first start: the first's key pair,
    as master.pem and master.pub. (Each master accepts the minion keys itself, here by
    auto_accept: Salt refuses a pki directory reached through a link.)
    """
    keys, other = pathlib.Path(first.config["pki_dir"]), pathlib.Path(second.config["pki_dir"])
    other.mkdir(parents=True, exist_ok=True)
    for suffix in ("pem", "pub"):
        shutil.copyfile(keys / f"master.{suffix}", other / f"master.{suffix}")
        (other / f"master.{suffix}").chmod(0o400)


@pytest.fixture(scope="module")
def names():
    return [random_string(f"{name}-") for name in ("alpha", "bravo", "charlie", "delta")]


@pytest.fixture(scope="module")
def minions(masters, names):
    """{minion id: factory}: each lists both masters, and is connected to both."""
    factories = {
        minion_id: masters["a"].salt_minion_daemon(
            minion_id,
            overrides={
                **minion_overrides(masters["a"], recon_randomize=False),
                "master": list(ADDRESSES.values()),
                "master_port": masters["a"].config["ret_port"],
            },
        )
        for minion_id in names
    }
    with started_together(factories):
        # Connected to both: each master gets an answer from every minion.
        for master in masters.values():
            wait_for(
                lambda master=master: answers(master, names) == set(names),
                f"every minion to answer {master.id}",
                timeout=120,
                interval=1,
            )
        yield factories


def answers(master, names):
    ret = master.salt_cli(timeout=30).run("-L", "test.ping", minion_tgt=",".join(names))
    return {minion for minion, answer in (ret.data or {}).items() if answer is True}


def shared_registry(master):
    return registry.Registry(salt.cache.factory(master.config))


def shared_cache(master):
    return salt.cache.factory(master.config)


def join_lease(master):
    return shared_cache(master).fetch(registry.CLUSTER_BANK, joins.LEASE_KEY) or None


def join_record(master, node_id):
    return shared_cache(master).fetch(joins.JOINS_BANK, node_id) or None


def wave_record(master, wave_id):
    return shared_cache(master).fetch(waves.WAVES_BANK, wave_id) or None


def statuses(master, names):
    return {node: (shared_registry(master).get(node) or {}).get("status") for node in names}


def wait_all_active(master, names, timeout=JOIN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = statuses(master, names)
        if all(status == "active" for status in current.values()):
            return
        time.sleep(1)
    records = {node: shared_registry(master).get(node) for node in names}
    pytest.fail(f"not all active after {timeout} s: {json.dumps(records, default=str)[:4000]}")


def assert_consistent(master, names):
    """One assignment version, every node's roles as recorded, exact counts, no lease held."""
    reg = shared_registry(master)
    records = reg.records()
    summary = reg.summary()
    counted = collections.Counter(record["status"] for record in records)
    assert {status: summary["counts"][status] for status in counted} == dict(counted)
    assert sum(summary["counts"].values()) == len(records) == len(names)
    members = [record for record in records if record["status"] in registry.MEMBER_STATUSES]
    assert summary["node_count"] == len(members)
    assignment = reg.assignment()
    assert summary["assignment_version"] == assignment["version"]
    for record in members:
        assert sorted(record.get("roles") or []) == sorted(
            assignment["assignments"].get(record["id"], [])
        ), (record["id"], assignment)
    assert join_lease(master) is None, join_lease(master)
    for node in names:
        assert (join_record(master, node) or {}).get("status") != "running", node


def events_of(event_listener, masters, tag, since):
    """{master id: [event]} of ``tag`` since ``since``, per master."""
    found = event_listener.get_events(
        [(master.id, tag) for master in masters.values()], after_time=since
    )
    by_master = collections.defaultdict(list)
    for event in found:
        by_master[event.daemon_id].append(event)
    return by_master


def register(master, minion_id):
    return master.salt_cli(timeout=180).run("eos_cluster.register", minion_tgt=minion_id)


@pytest.fixture(scope="module")
def cluster(masters, minions, names, event_listener):
    """All four registered at once, two asked through each master; all active."""
    since = time.time()
    asked = {node: masters["ab"[index % 2]] for index, node in enumerate(names)}
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        results = pool.map(lambda node: register(asked[node], node), names)
        for ret in results:
            assert ret.returncode == 0, ret
    wait_all_active(masters["a"], names)
    took = time.time() - since
    print(f"\nfour registrations through two masters: all active after {took:.1f} s")
    return {"since": since}


def test_both_masters_receive_every_registration(masters, names, cluster, event_listener):
    """Hot multi-master: each minion's registration reaches both masters' reactors."""
    received = events_of(event_listener, masters, "eos/cluster/register", cluster["since"])
    for master in masters.values():
        assert {event.data["id"] for event in received[master.id]} >= set(names), master.id


def test_racing_masters_record_every_node_once_with_exact_counts(masters, names, cluster):
    assert_consistent(masters["a"], names)
    summary = shared_registry(masters["b"]).summary()
    assert summary["counts"]["active"] == len(names)
    assert summary["node_count"] == len(names)


def test_no_node_is_joined_twice(masters, names, cluster, event_listener):
    for node in names:
        accepted = events_of(
            event_listener, masters, f"eos/cluster/node/{node}/accepted", cluster["since"]
        )
        # The registry says active a moment before the masters' engines forward the event.
        active = wait_for(
            lambda node=node: events_of(
                event_listener, masters, f"eos/cluster/node/{node}/active", cluster["since"]
            ),
            f"the active event of {node} from either master",
            timeout=30,
            interval=0.5,
        )
        # One master accepted it (the other's duplicate changes nothing) and one join ran.
        assert sum(len(events) for events in accepted.values()) == 1, (node, accepted)
        assert sum(len(events) for events in active.values()) == 1, (node, active)
        history = [entry["status"] for entry in shared_registry(masters["b"]).get(node)["history"]]
        assert history.count("active") == 1, (node, history)


@pytest.fixture(scope="module")
def api_urls(masters):
    """{"a": url, "b": url}: salt-api serving eos_api on each master."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for key, master in masters.items():
            factory = master.salt_api_daemon(factory_class=EosApiDaemon)
            stack.enter_context(factory.started())
            urls[key] = f"http://127.0.0.1:{master.config['eos_api']['port']}{api.PREFIX}"
        yield urls


def test_rest_api_of_either_master_serves_the_one_registry(names, cluster, api_urls):
    """A token from one master's API works at the other's; both list the same nodes."""
    token = login(api_urls["a"], OPERATOR)
    listed = {}
    for key, url in api_urls.items():
        reply = call(url, "GET", "/nodes", token=token)
        assert reply.status == 200, (key, reply)
        listed[key] = {node["id"]: node["status"] for node in reply.data["nodes"]}
    assert listed["a"] == listed["b"] == dict.fromkeys(names, "active")
    info = call(api_urls["b"], "GET", "/cluster/info", token=token)
    assert info.status == 200, info
    assert info.data["node_count"] == len(names)


def orchestrate(master, node, run, *extra):
    pillar = json.dumps({"eos_join": {"node": node, "run": run}})
    return master.salt_run_cli(timeout=600).run(
        *extra, "state.orchestrate", "eos.orchestrate.node_addition", f"pillar={pillar}"
    )


def test_joins_started_at_both_masters_run_one_wave_at_a_time(masters, names, cluster):
    """
    A join by hand through each master at once: the shared lease lets one wave run at a time,
    which takes both nodes or runs after the other's wave.
    """
    started = {"a": names[0], "b": names[1]}
    tokens = []

    def watch_tokens(stop):
        while not stop.is_set():
            held = join_lease(masters["a"])
            if held and (not tokens or tokens[-1] != held.get("token")):
                tokens.append(held.get("token"))
            time.sleep(0.1)

    stop = threading.Event()
    watcher = threading.Thread(target=watch_tokens, args=(stop,), daemon=True)
    watcher.start()
    began = time.time()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            key: pool.submit(orchestrate, masters[key], node, f"by-hand-{key}-{node}")
            for key, node in started.items()
        }
        results = {key: future.result() for key, future in futures.items()}
    stop.set()
    watcher.join()
    for key, ret in results.items():
        assert ret.returncode == 0, (key, ret)
    records = [join_record(masters["a"], node) for node in started.values()]
    for record in records:
        assert record["run"].startswith("by-hand-") and record["status"] == "active", record
    led = [wave_record(masters["b"], wave) for wave in sorted({r["wave"] for r in records})]
    spans = sorted((wave["started_at"], wave["finished_at"]) for wave in led)
    # One wave at a time, cluster-wide: a second wave started only after the first finished.
    for earlier, later in itertools.pairwise(spans):
        assert earlier[1] <= later[0], spans
    assert sorted(node for wave in led for node in wave["active"]) == sorted(started.values())
    assert tokens == sorted(tokens) and tokens, tokens
    assert_consistent(masters["b"], names)
    print(
        f"\ntwo joins started together through two masters: {time.time() - began:.1f} s, "
        f"in {len(led)} wave(s); lease tokens {tokens}"
    )


def kill_master(factory):
    """
    SIGKILL the master and every process run with its config, as when its host dies: the
    orchestration that ``salt-run --async`` started runs daemonized, outside the master's
    process tree, and is found by the config dir on its command line.
    """
    processes = {psutil.Process(factory.pid), *psutil.Process(factory.pid).children(True)}
    for process in psutil.process_iter(["cmdline"]):
        if str(factory.config_dir) in " ".join(process.info["cmdline"] or ()):
            processes.add(process)
    processes.discard(psutil.Process())
    killed_at = time.time()
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=10)
    factory.terminate()  # the factory's own bookkeeping: the processes are gone already
    return killed_at


def test_lease_holder_killed_mid_join_is_rolled_back_and_the_node_joins_again(
    masters, names, cluster, event_listener, trees
):
    node = names[2]
    run = random_string("doomed-")
    since = time.time()
    # The node's highstate waits on this file: the join cannot finish before A is killed.
    hold = trees / f"hold-{node}"
    hold.touch()
    try:
        # --async: the orchestration runs on with master A's config after the CLI returns.
        ret = orchestrate(masters["a"], node, run, "--async")
        assert ret.returncode == 0, ret
        wait_for(
            lambda: (
                "assign" in ((join_record(masters["b"], node) or {}).get("done") or [])
                and join_record(masters["b"], node)["run"] == run
            ),
            f"the join {run} to store its assignment",
            timeout=JOIN_TIMEOUT,
            interval=0.1,
        )
        held = join_lease(masters["b"])
        assert (held["run"], held["master"]) == (run, masters["a"].id), held
        killed_at = kill_master(masters["a"])
    finally:
        hold.unlink()
    failed = wait_event(
        event_listener,
        masters["b"],
        f"eos/cluster/node/{node}/failed",
        since,
        LEASE_SECONDS * 3,
        lambda: {
            "lease": join_lease(masters["b"]),
            "join": join_record(masters["b"], node),
            "node": shared_registry(masters["b"]).get(node),
        },
    )
    active = wait_event(
        event_listener,
        masters["b"],
        f"eos/cluster/node/{node}/active",
        failed.stamp,
        JOIN_TIMEOUT,
        lambda: {"join": join_record(masters["b"], node)},
    )
    wait_all_active(masters["b"], names)
    joined = join_record(masters["b"], node)
    assert joined["run"] != run and joined["status"] == "active", joined
    history = shared_registry(masters["b"]).get(node)["history"]
    assert any("abandoned" in (entry.get("reason") or "") for entry in history), history
    assert_consistent(masters["b"], names)
    print(
        f"\nmaster A killed in the join of {node} after its assign step; "
        f"rolled back by master B after {failed.stamp.timestamp() - killed_at:.1f} s "
        f"(lease {LEASE_SECONDS} s), "
        f"active again after {active.stamp.timestamp() - killed_at:.1f} s"
    )


def wait_event(event_listener, master, tag, since, timeout, state=dict):
    """The event ``tag`` on ``master``; when it does not come, ``state()`` says where things are."""
    matched = event_listener.wait_for_events([(master.id, tag)], after_time=since, timeout=timeout)
    assert matched.found_all_events, f"no {tag} on {master.id} within {timeout} s: {state()}"
    return next(iter(matched.matches))
