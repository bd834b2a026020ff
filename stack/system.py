"""The parts of FlowBlock running together on one machine.

``Stack`` starts the parts in order (the chaincode service, the devnet, the S3 server,
each organisation's executor) and stops them in reverse; :meth:`Stack.describe` is what
``<data-dir>/stack.json`` (:mod:`flowblock.stackfile`) says about them.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Configurable

from flowblock.chaincode import ChaincodeServer
from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.errors import ConfigError
from flowblock.identity import list_organisations, wallet_path
from flowblock.network.devnet import Devnet
from flowblock.network.organisations import ORDERER_ORGANISATION
from flowblock.stackfile import identity_key


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
        from flowblock.executor.storage.seaweedfs import SeaweedFS
        from flowblock.identity.s3 import load_credentials

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
            for org in organisations:
                self.executors.append(self._executor(org))
        except BaseException:
            self.stop()
            raise
        return self

    def _executor(self, org: str):
        """An organisation's executor service, from the settings this stack hands it: the
        devnet's gateway, the S3 server, its wallet and credentials, in-process workers."""
        from flowblock.executor.service import ExecutorService
        from flowblock.executor.settings import ExecutorSettings

        settings = ExecutorSettings(
            parent=self.parent,
            organisation=org,
            gateway=self.devnet.address,
            channel=self.devnet.channel,
            chaincode=CHAINCODE_NAME,
            s3_endpoint=self.s3.endpoint,
        )
        executor = settings.build(self.data_dir)
        self._gateways.append(executor.contract.network.gateway)
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
                identity_key(name, org): {
                    "name": name,
                    "org": org,
                    "role": role,
                    "wallet": str(wallet_path(self.data_dir, org, name)),
                }
                for org, name, role in people
            },
            "datasets": datasets,
        }
