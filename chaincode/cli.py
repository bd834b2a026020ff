"""``flowblock chaincode serve``: run chaincode as a service for peers to connect to."""

from __future__ import annotations

import importlib

from traitlets import Int, List, Unicode

from flowblock.chaincode.contract import Chaincode, Contract
from flowblock.chaincode.contracts import flowblock_chaincode
from flowblock.chaincode.server import ChaincodeServer
from flowblock.cli.base import FlowBlockApp, wait_for_termination
from flowblock.errors import InvalidArgument


def load_contract(reference: str) -> Contract:
    """Instantiate the contract class named ``module:Class``."""
    module_name, _, class_name = reference.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Contract)):
        raise InvalidArgument("--contract", "a contract class as 'module:Class'", reference)
    return cls()


class ChaincodeServeApp(FlowBlockApp):
    name = "flowblock chaincode serve"
    description = (
        "Serve chaincode over Fabric's chaincode protocol (chaincode as a service): peers, "
        "the devnet's or real Fabric's with a ccaas connection.json, connect to the address."
    )
    examples = (
        "flowblock chaincode serve --address 127.0.0.1:9999            # FlowBlock's chaincode\n"
        "flowblock chaincode serve --address 127.0.0.1:9998 --chaincode-id asset "
        "--contract flowblock.testing.asset_transfer:AssetTransfer"
    )
    address = Unicode("127.0.0.1:9999", help="Address to listen on (port 0: any free).").tag(
        config=True
    )
    chaincode_id = Unicode(
        "flowblock", help="The chaincode id (package id) the chaincode registers with."
    ).tag(config=True)
    contracts = List(
        Unicode(),
        help="Contract classes to serve, as 'module:Class'; the first is the default. "
        "Default: FlowBlock's own chaincode (computation, consent, records, catalogue, budget).",
    ).tag(config=True)
    max_transactions = Int(32, help="Transactions run at once.").tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        "address": "ChaincodeServeApp.address",
        "chaincode-id": "ChaincodeServeApp.chaincode_id",
        "contract": "ChaincodeServeApp.contracts",
    }

    def start(self) -> None:
        self.positional()
        if self.contracts:
            chaincode = Chaincode([load_contract(reference) for reference in self.contracts])
        else:
            chaincode = flowblock_chaincode()
        server = ChaincodeServer(
            chaincode, self.chaincode_id, self.address, max_transactions=self.max_transactions
        ).start()
        print(
            f"flowblock chaincode: {self.chaincode_id} serving "
            f"{', '.join(chaincode.contracts)} on {server.address}",
            flush=True,
        )
        try:
            wait_for_termination()
        finally:
            server.stop()


class ChaincodeApp(FlowBlockApp):
    name = "flowblock chaincode"
    description = "Chaincode: serve it for the peers."
    subcommands = {"serve": (ChaincodeServeApp, "Serve chaincode as a service (CCaaS).")}
