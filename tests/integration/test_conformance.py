"""Interoperability with Fabric's official tools, as a real peer offers it.

Fabric's Node Gateway client (@hyperledger/fabric-gateway) submits and evaluates
against the devnet; a chaincode written with Fabric's Node contract API
(fabric-contract-api), served with ``fabric-chaincode-node server`` as a service, is
invoked through our Python client. The Node packages are pinned in
tests/conformance/package-lock.json and installed by scripts/setup.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from flowblock.errors import EndorseError
from flowblock.ports import free_ports
from flowblock.testing.ledger import DevnetProcess

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
NODE_MODULES = CONFORMANCE / "node_modules"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or not (NODE_MODULES / "@hyperledger" / "fabric-gateway").is_dir():
        pytest.fail("Node.js and tests/conformance/node_modules are needed; run scripts/setup")
    return found


@pytest.fixture
def node_chaincode(node):
    """The Node contract-API chaincode, served as a service on a free port."""
    (port,) = free_ports()
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [node, str(NODE_MODULES / ".bin" / "fabric-chaincode-node"), "server",
         "--chaincode-address", address, "--chaincode-id", "nodeassets:1",
         "--module-path", str(CONFORMANCE / "node-chaincode")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((host, int(port))) == 0:
                break
        if process.poll() is not None:
            pytest.fail("the Node chaincode exited: " + process.stdout.read())
        time.sleep(0.1)
    yield address
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def devnet_with_node(demo_world, tmp_path, asset_chaincode, node_chaincode):
    data_dir = tmp_path / "data"
    shutil.copytree(demo_world.data_dir, data_dir)
    chaincodes = {"asset": asset_chaincode.address, "nodeassets": node_chaincode}
    with DevnetProcess(data_dir, chaincodes) as process:
        yield process


def test_the_official_node_gateway_client_submits_and_evaluates(node, devnet, demo_world):
    done = subprocess.run(
        [node, str(CONFORMANCE / "gateway-client.js"), devnet.address,
         str(demo_world.wallet("alice")), "asset", "node-asset-1"],
        capture_output=True, text=True, timeout=120, cwd=CONFORMANCE,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout)
    assert seen["created"]["created_by"] == "alice"
    assert seen["read"]["owner"] == "alice"
    assert seen["error"]["name"] == "EndorseError"
    assert any("already exists" in detail for detail in seen["error"]["details"])
    assert seen["status"]["successful"] is True
    assert seen["status"]["code"] == 0
    assert [e["name"] for e in seen["events"]] == ["AssetCreated", "AssetTransferred"]
    assert seen["events"][0]["block"] < seen["events"][1]["block"] == seen["status"]["block"]
    # What the Node client committed, our client reads back.
    contract = devnet.gateway(demo_world.identity("bob")).get_network("flowblock")
    asset = json.loads(contract.get_contract("asset").evaluate("Read", "node-asset-1"))
    assert asset["owner"] == "bob"


def test_a_node_contract_api_chaincode_runs_as_a_service(devnet_with_node, demo_world):
    network = devnet_with_node.gateway(demo_world.identity("alice")).get_network("flowblock")
    contract = network.get_contract("nodeassets", "NodeAssets")
    assert contract.submit("Put", "k1", "v1") == b"v1"
    contract.submit("Put", "k2", "v2")
    assert contract.evaluate("Get", "k1") == b"v1"
    assert json.loads(contract.evaluate("Keys", "", "")) == ["k1", "k2"]
    who = json.loads(contract.evaluate("WhoAmI"))
    assert (who["mspid"], who["role"]) == ("UniversityMSP", "researcher")
    with pytest.raises(EndorseError, match="k9 does not exist"):
        contract.evaluate("Get", "k9")
    with network.chaincode_events("nodeassets", start_block=0) as events:
        first = next(iter(events))
    assert (first.name, first.payload) == ("Put", b"k1")
