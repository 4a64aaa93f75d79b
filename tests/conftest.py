import logging
import os

import pytest
import salt._logging.impl
from saltfactories.utils import random_string

from saltext.eos import PACKAGE_ROOT

# Reset the root logger to its default level: salt-factories raises it, which floods output.
logging.root.setLevel(logging.WARNING)

IS_ROOT = os.geteuid() == 0


def pytest_configure(config):
    # Salt queues log records in a deferred stderr handler until logging is set up, then
    # flushes them at exit, after pytest closed stderr. Hand them to pytest's handlers now.
    salt._logging.impl.shutdown_temp_handler()


def pytest_collection_modifyitems(items):
    skip_root = pytest.mark.skip(reason="needs root to mount filesystems (CI runs as root)")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip_root)


@pytest.fixture(scope="session")
def salt_factories_config():
    return {
        "code_dir": str(PACKAGE_ROOT),
        "inject_sitecustomize": "COVERAGE_PROCESS_START" in os.environ,
        "start_timeout": 120 if os.environ.get("CI") else 60,
    }


@pytest.fixture(scope="module")
def master_id():
    return random_string("master-")


@pytest.fixture(scope="module")
def minion_id():
    return random_string("minion-")
