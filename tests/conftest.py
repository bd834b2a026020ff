"""Test layers follow the directories: tests/unit, tests/integration, tests/e2e; the
suites tests/security (attacks), tests/privacy (a researcher against disclosure control)
and tests/faults (crashes and outages) cut across them.

Each test gets the marker of its layer or suite, so ``pytest -m unit`` runs one layer
alone and ``pytest -m security`` one suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowblock.testing.flowblock_ledger import GatewayDriver, LocalDriver, World

pytest_plugins = ["flowblock.testing.fixtures"]

LAYERS = ("unit", "integration", "e2e")
TESTS = Path(__file__).parent


#: Suites that cut across the layers: each test also gets the marker of its suite, and is
#: an integration test (they attack or break the real servers) unless it is marked unit.
SUITES = ("security", "faults", "privacy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(item.path).relative_to(TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
        elif layer in SUITES:
            item.add_marker(getattr(pytest.mark, layer))
            if item.get_closest_marker("unit") is None:
                item.add_marker(pytest.mark.integration)


# -- the chaincode's rules, driven in-process (unit) and on a devnet (integration) ------


@pytest.fixture(scope="module")
def devnet_driver(flowblock_devnet):
    driver = GatewayDriver(flowblock_devnet.address)
    yield driver
    driver.close()


@pytest.fixture(
    params=[
        pytest.param("local", marks=pytest.mark.unit),
        pytest.param("devnet", marks=pytest.mark.integration),
    ]
)
def driver(request, tmp_path):
    if request.param == "devnet":
        yield request.getfixturevalue("devnet_driver")
        return
    local = LocalDriver(tmp_path)
    yield local
    local.close()


@pytest.fixture
def world(driver, demo_world) -> World:
    return World(driver, demo_world)


@pytest.fixture
def local(tmp_path, demo_world):
    """The in-process ledger alone, for tests that move the transaction clock."""
    driver = LocalDriver(tmp_path)
    yield World(driver, demo_world), driver.ledger
    driver.close()
