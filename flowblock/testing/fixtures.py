"""pytest fixtures: ``pytest_plugins = ["flowblock.testing.fixtures"]`` in a conftest."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowblock.testing.identities import DemoWorld, make_demo_world


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    """The demo organisations and people, made once per test session. Treat as read-only."""
    return make_demo_world(tmp_path_factory.mktemp("demo-world"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty FlowBlock data directory of the test's own."""
    path = tmp_path / "flowblock-data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def asset_chaincode():
    """The asset-transfer chaincode served on a free port for the whole session."""
    from flowblock.testing.asset_transfer import AssetTransfer
    from flowblock.testing.ledger import serve_chaincode

    with serve_chaincode([AssetTransfer()], "asset") as server:
        yield server


@pytest.fixture
def devnet(demo_world: DemoWorld, tmp_path: Path, asset_chaincode):
    """A devnet process of the test's own, on a copy of the demo organisations."""
    import shutil

    from flowblock.testing.ledger import DevnetProcess

    data_dir = tmp_path / "devnet-data"
    shutil.copytree(demo_world.data_dir, data_dir)
    with DevnetProcess(data_dir, {"asset": asset_chaincode.address}) as process:
        yield process


@pytest.fixture
def asset_ledger(tmp_path: Path):
    """The asset-transfer contract on an in-process ledger of the test's own."""
    from flowblock.chaincode import Chaincode
    from flowblock.testing.asset_transfer import AssetTransfer
    from flowblock.testing.chaincode import LocalLedger

    ledger = LocalLedger(Chaincode([AssetTransfer()]), tmp_path, name="asset")
    yield ledger
    ledger.close()


@pytest.fixture(scope="session")
def s3_server(demo_world: DemoWorld, tmp_path_factory: pytest.TempPathFactory):
    """A real SeaweedFS S3 server for the demo organisations, for the whole session."""
    from flowblock.executor.storage.credentials import load_credentials
    from flowblock.executor.storage.seaweedfs import SeaweedFS
    from flowblock.network.organisations import ORDERER_ORGANISATION

    organisations = {
        org: load_credentials(demo_world.data_dir, org)
        for org in ("Hospital", "University")
        if org != ORDERER_ORGANISATION
    }
    server = SeaweedFS(tmp_path_factory.mktemp("s3"), organisations).start()
    yield server
    server.stop(graceful=False)  # throwaway data: no need to wait for a clean shutdown


@pytest.fixture(scope="session")
def flowblock_devnet(demo_world: DemoWorld, tmp_path_factory: pytest.TempPathFactory):
    """A devnet serving FlowBlock's chaincode, shared by the session: use unique names."""
    import shutil

    from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
    from flowblock.testing.ledger import DevnetProcess, serve_chaincode

    data_dir = tmp_path_factory.mktemp("flowblock-devnet") / "data"
    shutil.copytree(demo_world.data_dir, data_dir)
    contracts = list(flowblock_chaincode().contracts.values())
    with (
        serve_chaincode(contracts, CHAINCODE_NAME) as server,
        DevnetProcess(data_dir, {CHAINCODE_NAME: server.address}) as devnet,
    ):
        yield devnet
