"""How an organisation's executor runs: where its ledger, wallet and bucket are, its
workers, its queue, its limits.

Set in ``flowblock_config.py``, by ``FLOWBLOCK_*`` variables (see flowblock.config), or
on the command line; the same settings serve the in-process workers and Celery's, and
they are all the executor needs, so it runs against any Fabric gateway and any S3. On
one machine the stack hands it its own (``flowblock up``); ``flowblock executor`` falls
back to the running stack's ``stack.json`` for an address it was not given. The
organisation's disclosure rules are the ``DisclosurePolicy`` section of the same
configuration (``c.DisclosurePolicy.min_cohort = 20``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets import Int, Unicode
from traitlets.config import Configurable

from flowblock.errors import ConfigError
from flowblock.executor.disclosure import DisclosurePolicy
from flowblock.executor.sandbox import Limits

if TYPE_CHECKING:
    from flowblock.executor.worker import Executor
    from flowblock.ledger import Gateway


class ExecutorSettings(Configurable):
    organisation = Unicode(
        "Hospital", help="The organisation whose data this executor serves."
    ).tag(config=True)
    identity = Unicode("executor", help="Name of the executor's wallet in its organisation.").tag(
        config=True
    )
    gateway = Unicode(
        "", help="Address (host:port) of the Fabric Gateway of a peer of the organisation."
    ).tag(config=True)
    tls_ca = Unicode(
        "", help="PEM file of the CA that signed the gateway's TLS certificate. Empty: plaintext."
    ).tag(config=True)
    channel = Unicode("flowblock", help="The Fabric channel FlowBlock's chaincode is on.").tag(
        config=True
    )
    chaincode = Unicode("flowblock", help="The name FlowBlock's chaincode is deployed under.").tag(
        config=True
    )
    wallet = Unicode(
        "",
        help="The executor's wallet (Fabric MSP layout). Empty: the wallet named by 'identity' "
        "of the organisation under the data directory.",
    ).tag(config=True)
    s3_endpoint = Unicode("", help="URL of the S3 server holding the organisation's bucket.").tag(
        config=True
    )
    s3_credentials = Unicode(
        "",
        help="JSON file of the organisation's S3 access key, secret key and bucket (mode 0600). "
        "Empty: the organisation's credentials under the data directory.",
    ).tag(config=True)
    broker_url = Unicode(
        "",
        help="Redis URL of a Celery broker (redis://host:port/0). Empty: in-process workers.",
    ).tag(config=True)
    workers = Int(4, help="Computations run at once by in-process workers.").tag(config=True)
    redelivery_seconds = Int(
        3600,
        help="Celery: after how long a task whose worker died unacknowledged is delivered "
        "again (Redis's visibility timeout); keep it above the longest computation.",
    ).tag(config=True)
    cpu_seconds = Int(600, help="CPU seconds one algorithm run may use.").tag(config=True)
    memory_mb = Int(8192, help="Memory one algorithm run may use, in MiB.").tag(config=True)
    processes = Int(
        0,
        help="Processes and threads one algorithm run may have at once (TensorFlow's threads "
        "count). 0: the sandbox's default, max(128, 4 per core).",
    ).tag(config=True)

    @property
    def limits(self) -> Limits:
        limits = Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_mb * 1024**2)
        return replace(limits, processes=self.processes) if self.processes else limits

    @property
    def policy(self) -> DisclosurePolicy:
        """The organisation's disclosure policy, read from the same configuration."""
        return DisclosurePolicy(parent=self)

    def connect(self, data_dir: str | os.PathLike[str]) -> Gateway:
        """A gateway to the ledger as the organisation's executor."""
        from flowblock.identity import load_wallet, wallet_path
        from flowblock.ledger import Gateway

        if not self.gateway:
            raise ConfigError(
                "the executor has no gateway: set ExecutorSettings.gateway (--gateway "
                "HOST:PORT, or FLOWBLOCK_EXECUTOR_GATEWAY)."
            )
        wallet = self.wallet or wallet_path(data_dir, self.organisation, self.identity)
        if self.tls_ca:
            return Gateway.connect(self.gateway, wallet, tls_ca=self.tls_ca)
        return Gateway(self.gateway, load_wallet(wallet))

    def build(self, data_dir: str | os.PathLike[str]) -> Executor:
        """The organisation's executor from these settings alone (``data_dir`` only for
        the wallet and the credentials when their paths are not given)."""
        from flowblock.executor.storage.objects import ObjectStore
        from flowblock.executor.worker import Executor
        from flowblock.identity.s3 import credentials_path, read_credentials

        if not self.s3_endpoint:
            raise ConfigError(
                "the executor has no S3 server: set ExecutorSettings.s3_endpoint "
                "(--s3-endpoint URL, or FLOWBLOCK_EXECUTOR_S3)."
            )
        path = self.s3_credentials or credentials_path(data_dir, self.organisation)
        store = ObjectStore(self.s3_endpoint, read_credentials(Path(path), self.organisation))
        gateway = self.connect(data_dir)
        contract = gateway.get_network(self.channel).get_contract(self.chaincode)
        return Executor(contract, store, self.organisation, policy=self.policy, limits=self.limits)
