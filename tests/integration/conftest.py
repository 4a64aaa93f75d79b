import pytest


@pytest.fixture(scope="module")
def master_config_overrides():
    return {}


@pytest.fixture(scope="module")
def minion_config_overrides():
    return {}


@pytest.fixture(scope="module")
def master(salt_factories, master_id, master_config_overrides):
    factory = salt_factories.salt_master_daemon(master_id, overrides=master_config_overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def minion(master, minion_id, minion_config_overrides):
    factory = master.salt_minion_daemon(minion_id, overrides=minion_config_overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_cli(master):
    return master.salt_cli(timeout=120)


@pytest.fixture(scope="module")
def salt_run_cli(master):
    return master.salt_run_cli(timeout=120)


@pytest.fixture(scope="module")
def salt_call_cli(minion):
    return minion.salt_call_cli(timeout=120)
