"""
Prometheus watches the fleet and its alerts come back as Salt events, end to end.

A real master (the eos ext_pillar, the eos fileserver) with salt-api serving eos_api, and a
minion that the registry places in the observe role. Its highstate of eos.roles.observe
writes the scrape targets (the registry's members, at their addresses) and the EOS rules; the
eos_observe module gives prometheus.yml and alertmanager.yml. A real prometheus-node-exporter
serves the textfile that the real eos_storage beacon writes about a real tmpfs mount, a real
prometheus scrapes it and evaluates the rules, and a real prometheus-alertmanager posts to
eos_api with HTTP Basic credentials. Filling the mount past the critical level makes
eos/alert/firing/EosStorageCritical appear on the master's bus; below the warning level
nothing fires. Intervals are one second, so the whole module takes well under two minutes.
"""

import contextlib
import json
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import salt.cache
import yaml
from pytestshellutils.utils import ports

from saltext.eos.utils.cluster import registry
from saltext.eos.utils.observe import rules as observe_rules
from saltext.eos.utils.storage import thresholds
from tests.support import servers
from tests.support.cluster import run_ok
from tests.support.cluster import wait_for
from tests.support.eos_api import EosApiDaemon
from tests.support.filesystems import fill_to

BINARIES = ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter")
ALERTER = ("alertmanager", "alerter-secret")
CRITICAL = observe_rules.level_alert("critical")

pytestmark = [pytest.mark.root, pytest.mark.skip_if_binaries_missing(*BINARIES)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("observe")


@pytest.fixture(scope="module")
def tmpfs(workdir):
    """A 32 MiB tmpfs, the mount the beacon watches; unmounted after, always."""
    mount_point = workdir / "mnt"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="module")
def listen_ports():
    names = ("api", "exporter", "prometheus", "alertmanager", "alertmanager_cluster")
    return {name: ports.get_unused_localhost_port() for name in names}


@pytest.fixture(scope="module")
def textfile_dir(workdir):
    path = workdir / "textfile"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def master_config_overrides(workdir, listen_ports):
    users = workdir / "users.txt"
    users.write_text(f"{ALERTER[0]}:{ALERTER[1]}\n")
    return {
        "fileserver_backend": ["roots", "eos"],
        "ext_pillar": [{"eos": {}}],
        # The README's reaction to membership changes, as a site runs it.
        "reactor": [{"eos/cluster/node/*/*": ["salt://eos/reactor/observe_targets.sls"]}],
        "eos_api": {"port": listen_ports["api"], "webhook_eauth": "file"},
        "netapi_enable_clients": ["runner"],
        "external_auth": {
            "file": {
                "^filename": str(users),
                "^filetype": "text",
                ALERTER[0]: [{"@runner": ["event.send"]}],
            }
        },
    }


@pytest.fixture(scope="module")
def minion_config_overrides(workdir):
    return {
        "loop_interval": 1,  # beacon intervals count these ticks
        "eos": {
            "manage_software": False,  # the test runs the daemons itself
            "config_dir": str(workdir / "etc"),
            # The beacon's mounts name the tmpfs; the analyzer leaves tmpfs out by default.
            "analyzer": {"history_min_interval": 0, "include_tmpfs": True},
        },
    }


@pytest.fixture(scope="module")
def pillar(master, tmpfs, textfile_dir, listen_ports):
    """The site's pillar: the beacon on the tmpfs, and every interval one second."""
    data = {
        "eos": {
            "beacon": {
                "interval": 1,
                "mounts": [str(tmpfs)],
                "textfile": str(textfile_dir / "eos.prom"),
            },
            "observe": {
                "targets": {"node_exporter_port": listen_ports["exporter"]},
                "prometheus": {
                    "scrape_interval": 1,
                    "scrape_timeout": 1,
                    "evaluation_interval": 1,
                    "alertmanagers": [f"127.0.0.1:{listen_ports['alertmanager']}"],
                },
                "rules": {"for": 0, "forecast_for": 0},
                "alertmanager": {"group_wait": 1, "group_interval": 1, "repeat_interval": 3600},
            },
        }
    }
    top = master.pillar_tree.base.temp_file("top.sls", "base:\n  '*': [site]\n")
    site = master.pillar_tree.base.temp_file("site.sls", yaml.safe_dump(data))
    with top, site:
        yield data


@pytest.fixture(scope="module")
def observe_node(master, minion, salt_run_cli, salt_cli, pillar):
    """The minion, a member of the registry at 127.0.0.1 in the observe role, highstated."""
    run_ok(salt_run_cli, "eos_cluster.preregister", minion.id, "address=127.0.0.1")
    run_ok(salt_run_cli, "eos_cluster.accept", minion.id)
    # Placement is not under test here: the assignment is written as the solver would.
    reg = registry.open_registry(master.config, cache=salt.cache.factory(master.config))
    reg.store_assignment({minion.id: ["observe"]})
    run_ok(salt_cli, "saltutil.refresh_pillar", "wait=True", minion_tgt=minion.id)
    states = run_ok(salt_cli, "state.apply", "eos.roles.observe", minion_tgt=minion.id)
    failed = {key: value["comment"] for key, value in states.items() if value["result"] is False}
    assert not failed, failed
    return minion


@pytest.fixture(scope="module")
def salt_api(master):
    factory = master.salt_api_daemon(factory_class=EosApiDaemon)
    with factory.started():
        yield factory


@contextlib.contextmanager
def daemon(args, log_path):
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        servers.stop(process)


def http_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def answers(url):
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(observe_node, salt_cli, salt_api, workdir, textfile_dir, listen_ports):
    """node exporter, Prometheus and Alertmanager, configured from what EOS generated."""
    eos_dir = pathlib.Path(observe_node.config["eos"]["config_dir"]) / "prometheus"
    targets_file, rules_file = eos_dir / "targets.json", eos_dir / "rules.yml"
    prometheus_yml = workdir / "prometheus.yml"
    prometheus_yml.write_text(
        yaml.safe_dump(
            run_ok(
                salt_cli,
                "eos_observe.prometheus_config",
                str(targets_file),
                json.dumps([str(rules_file)]),
                minion_tgt=observe_node.id,
            )
        )
    )
    password_file = workdir / "alerter-password"
    password_file.write_text(ALERTER[1])
    basic_auth = {"username": ALERTER[0], "password_file": str(password_file)}
    alertmanager_yml = workdir / "alertmanager.yml"
    alertmanager_yml.write_text(
        yaml.safe_dump(
            run_ok(
                salt_cli,
                "eos_observe.alertmanager_config",
                f"http://127.0.0.1:{listen_ports['api']}",
                f"basic_auth={json.dumps(basic_auth)}",
                minion_tgt=observe_node.id,
            )
        )
    )
    exporter = [
        shutil.which("prometheus-node-exporter"),
        f"--web.listen-address=127.0.0.1:{listen_ports['exporter']}",
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={textfile_dir}",
    ]
    prometheus = [
        shutil.which("prometheus"),
        f"--config.file={prometheus_yml}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{listen_ports['prometheus']}",
    ]
    alertmanager = [
        shutil.which("prometheus-alertmanager"),
        f"--config.file={alertmanager_yml}",
        f"--storage.path={workdir / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{listen_ports['alertmanager']}",
        f"--cluster.listen-address=127.0.0.1:{listen_ports['alertmanager_cluster']}",
    ]
    with contextlib.ExitStack() as stack:
        for name, args in (
            ("exporter", exporter),
            ("alertmanager", alertmanager),
            ("prometheus", prometheus),
        ):
            stack.enter_context(daemon(args, workdir / f"{name}.log"))
        urls = {
            name: f"http://127.0.0.1:{listen_ports[name]}"
            for name in ("exporter", "prometheus", "alertmanager")
        }
        wait_for(lambda: answers(urls["prometheus"] + "/-/ready"), "prometheus", timeout=30)
        wait_for(lambda: answers(urls["alertmanager"] + "/-/ready"), "alertmanager", timeout=30)
        yield {"urls": urls, "targets": targets_file, "rules": rules_file, "workdir": workdir}


def query(stack, expr):
    url = stack["urls"]["prometheus"] + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return http_json(url)["data"]["result"]


def test_the_targets_are_the_registry_members_at_their_addresses(stack, observe_node, listen_ports):
    groups = json.loads(stack["targets"].read_text())
    assert groups == [
        {
            "targets": [f"127.0.0.1:{listen_ports['exporter']}"],
            "labels": {"node": observe_node.id, "roles": ",observe,"},
        }
    ]


def test_prometheus_scrapes_the_beacon_metrics_with_their_thresholds(stack, tmpfs, observe_node):
    mount = str(tmpfs)
    selector = f'{{node="{observe_node.id}",mount="{mount}"}}'

    def scraped():
        found = query(stack, f"eos_storage_threshold_ratio{selector}")
        return {sample["metric"]["level"] for sample in found}

    levels = wait_for(scraped, "the EOS metrics of the tmpfs in Prometheus", timeout=60)
    assert levels == set(thresholds.THRESHOLD_LEVELS)
    assert query(stack, f"eos_storage_usage_ratio{selector}")


def test_below_the_warning_level_nothing_fires(stack, tmpfs, observe_node, event_listener, master):
    since = time.time()
    fill_to(tmpfs, 40)
    selector = f'{{node="{observe_node.id}",mount="{tmpfs}"}}'
    wait_for(
        lambda: any(
            float(s["value"][1]) >= 0.39 for s in query(stack, f"eos_storage_usage_ratio{selector}")
        ),
        "the 40 % usage scraped",
        timeout=60,
    )
    time.sleep(5)  # several evaluations and group_wait
    assert query(stack, 'ALERTS{alertname=~"EosStorage.*"}') == []
    fired = event_listener.get_events([(master.id, "eos/alert/firing/*")], after_time=since)
    assert not fired


def test_past_the_critical_level_the_alert_comes_back_as_an_event(
    stack, tmpfs, observe_node, event_listener, master
):
    since = time.time()
    fill_to(tmpfs, 96)
    tag = f"eos/alert/firing/{CRITICAL}"
    matched = event_listener.wait_for_events([(master.id, tag)], after_time=since, timeout=90)
    assert matched.found_all_events, (
        f"no {tag}: alerts in Prometheus {query(stack, 'ALERTS')}; "
        f"alertmanager log {(stack['workdir'] / 'alertmanager.log').read_text()[-2000:]}"
    )
    event = next(iter(matched.matches))
    labels = event.data["labels"]
    assert (labels["node"], labels["mount"], labels["level"]) == (
        observe_node.id,
        str(tmpfs),
        "critical",
    )
    assert labels["severity"] == "critical"
    assert event.data["sent_by"] == ALERTER[0]
    print(
        f"\nfilled past critical: {tag} on the master's bus after "
        f"{event.stamp.timestamp() - since:.1f} s"
    )


def test_a_new_member_is_scraped_without_a_highstate(
    stack, salt_run_cli, observe_node, listen_ports
):
    """Accepting a node fires its event; the reactor rewrites the targets on the observe node."""
    newcomer = "data-7"
    run_ok(salt_run_cli, "eos_cluster.preregister", newcomer, "address=127.0.0.2")
    run_ok(salt_run_cli, "eos_cluster.accept", newcomer)

    def scraped_nodes():
        groups = json.loads(stack["targets"].read_text())
        return {group["labels"]["node"]: group["targets"] for group in groups}

    found = wait_for(
        lambda: newcomer in scraped_nodes() and scraped_nodes(), "data-7 in targets.json", 60
    )
    assert found == {
        observe_node.id: [f"127.0.0.1:{listen_ports['exporter']}"],
        newcomer: [f"127.0.0.2:{listen_ports['exporter']}"],
    }
