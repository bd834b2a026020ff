"""The parts of FlowBlock running together on one machine, and ``stack.json``.

``Stack`` starts the parts in order (the chaincode service, the devnet, the S3 server,
each organisation's executor) and stops them in reverse. ``<data-dir>/stack.json``
tells clients, tests and dashboards where everything is: it is written only once
every part answers, atomically, and removed on a clean stop, so its presence means
the stack is up. It never holds a secret: identities are named by the paths of their
wallets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from traitlets.config import Configurable

from flowblock.chaincode import ChaincodeServer
from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.errors import ConfigError
from flowblock.identity import list_organisations, wallet_path
from flowblock.network.devnet import Devnet
from flowblock.network.organisations import ORDERER_ORGANISATION

STACK_FILE = "stack.json"


class Stack:
    """The embedded default: FlowBlock's chaincode, the devnet and SeaweedFS."""

    def __init__(self, data_dir: Path, parent: Configurable | None = None) -> None:
        self.data_dir = data_dir
        self.parent = parent
        self.chaincode: ChaincodeServer | None = None
        self.devnet: Devnet | None = None
        self.s3 = None
        self.executors: list = []
        self._gateways: list = []

    def start(self) -> Stack:
        from flowblock.executor.storage.credentials import load_credentials
        from flowblock.executor.storage.seaweedfs import SeaweedFS

        try:
            self.chaincode = ChaincodeServer(flowblock_chaincode(), CHAINCODE_NAME).start()
            self.devnet = Devnet(
                parent=self.parent,
                data_dir=str(self.data_dir),
                chaincodes={CHAINCODE_NAME: self.chaincode.address},
            ).start()
            organisations = {
                org: load_credentials(self.data_dir, org)
                for org in list_organisations(self.data_dir)
                if org != ORDERER_ORGANISATION
            }
            self.s3 = SeaweedFS(self.data_dir / "s3", organisations).start()
            for org, credentials in organisations.items():
                self.executors.append(self._executor(org, credentials))
        except BaseException:
            self.stop()
            raise
        return self

    def _executor(self, org: str, credentials):
        """An organisation's executor service: its identity, its bucket, in-process workers."""
        from flowblock.executor.service import ExecutorService
        from flowblock.executor.settings import ExecutorSettings
        from flowblock.executor.storage.objects import ObjectStore
        from flowblock.executor.worker import Executor
        from flowblock.identity import load_wallet
        from flowblock.ledger import Gateway

        gateway = Gateway(
            self.devnet.address, load_wallet(wallet_path(self.data_dir, org, "executor"))
        )
        self._gateways.append(gateway)
        contract = gateway.get_network(self.devnet.channel).get_contract(CHAINCODE_NAME)
        settings = ExecutorSettings(parent=self.parent, organisation=org)
        store = ObjectStore(self.s3.endpoint, credentials)
        executor = Executor(contract, store, org, policy=settings.policy, limits=settings.limits)
        checkpoint = self.data_dir / "executor" / org / "checkpoint.json"
        return ExecutorService(executor, checkpoint, settings.workers).start()

    def stop(self) -> None:
        for service in self.executors:
            service.stop()
        for gateway in self._gateways:
            gateway.close()
        if self.s3 is not None:
            self.s3.stop()
        if self.devnet is not None:
            self.devnet.stop()
        if self.chaincode is not None:
            self.chaincode.stop()

    def describe(self, people: list[tuple[str, str, str]], datasets: list[str]) -> dict:
        """What ``stack.json`` says: endpoints, wallets (paths), datasets; no secrets."""
        if self.devnet is None or self.s3 is None:
            raise ConfigError("the stack is not running.")
        return {
            "gateway": self.devnet.address,
            "channel": self.devnet.channel,
            "chaincodes": sorted(self.devnet.chaincodes),
            "s3": {"endpoint": self.s3.endpoint},
            "identities": {
                name: {
                    "org": org,
                    "role": role,
                    "wallet": str(wallet_path(self.data_dir, org, name)),
                }
                for org, name, role in people
            },
            "datasets": datasets,
        }


def write_stack_file(data_dir: str | os.PathLike[str], stack: dict[str, Any]) -> Path:
    """Write ``stack.json`` atomically (readers never see half of it)."""
    path = Path(data_dir).expanduser() / STACK_FILE
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(stack, indent=2, sort_keys=True) + "\n")
    staging.replace(path)
    return path


def read_stack_file(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(data_dir).expanduser() / STACK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def remove_stack_file(data_dir: str | os.PathLike[str]) -> None:
    (Path(data_dir).expanduser() / STACK_FILE).unlink(missing_ok=True)
