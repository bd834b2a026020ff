"""The parts of FlowBlock running together on one machine.

``Stack`` starts the parts in order (the chaincode service, the devnet, the S3 server,
each organisation's executor) and stops them in reverse; :meth:`Stack.describe` is what
``<data-dir>/stack.json`` (:mod:`flowblock.stackfile`) says about them.

The S3 server is the one part in a process of its own, so it is the one part that can
exit alone (killed, crashed): a :class:`Supervisor` starts it again, on the ports it had,
since the executors and stack.json know it by its endpoint.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

from traitlets.config import Configurable

from flowblock.chaincode import ChaincodeServer
from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.errors import ConfigError
from flowblock.identity import list_organisations, wallet_path
from flowblock.network.devnet import Devnet
from flowblock.network.organisations import ORDERER_ORGANISATION
from flowblock.stackfile import identity_key

log = logging.getLogger(__name__)
#: Seconds a stop gives the executors' running computations, all executors together.
EXECUTOR_STOP_GRACE = 20.0


class Stack:
    """The embedded default: FlowBlock's chaincode, the devnet and SeaweedFS."""

    def __init__(self, data_dir: Path, parent: Configurable | None = None) -> None:
        self.data_dir = data_dir
        self.parent = parent
        self.chaincode: ChaincodeServer | None = None
        self.devnet: Devnet | None = None
        self.s3 = None
        self.s3_supervisor: Supervisor | None = None
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
            self.s3_supervisor = Supervisor(self.s3, "SeaweedFS").start()
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
        """Stop every part, the executors first: their running computations get
        ``EXECUTOR_STOP_GRACE`` seconds in all, and what they leave (queued tokens still
        APPROVED, a long run still RUNNING) the next start takes up. Their gateways are
        closed before the S3 server stops, so a run cut short fails no token."""
        deadline = time.monotonic() + EXECUTOR_STOP_GRACE
        for service in self.executors:
            service.stop(grace=max(0.0, deadline - time.monotonic()))
        for gateway in self._gateways:
            gateway.close()
        if self.s3_supervisor is not None:
            self.s3_supervisor.stop()  # and the S3 server with it
        elif self.s3 is not None:
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


class Server(Protocol):
    """What a supervisor watches: SeaweedFS, or a stand-in in a test."""

    process: subprocess.Popen | None  # None once stopped

    def start(self) -> object: ...

    def stop(self) -> None: ...


class Supervisor:
    """Starts a server again whenever its process exits, until :meth:`stop`.

    The supervisor's own thread restarts it and, at the end, stops it:
    a child started through flowblock.children dies with the *thread* that started it, so
    it must be a thread that lives as long as the child should. A start that fails is
    tried again after a wait that doubles, up to ``longest_wait`` seconds.
    """

    def __init__(
        self, server: Server, name: str, interval: float = 1.0, longest_wait: float = 30.0
    ) -> None:
        self.server = server
        self.name = name
        self.interval = interval
        self.longest_wait = longest_wait
        #: How many times the server was started again.
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"supervise {name}", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _watch(self) -> None:
        wait, failing = self.interval, False
        while not self._stopping.wait(wait):
            process = self.server.process
            running = process is not None and process.poll() is None
            if running or (process is None and not failing):
                continue  # running, or stopped on purpose
            if not failing:
                log.warning("%s exited (%s); starting it again.", self.name, _ended(process))
            try:
                self.server.start()
            except Exception as error:  # whatever it was, this thread must go on watching
                wait, failing = min(wait * 2, self.longest_wait), True
                log.error("%s did not start again (%s); trying again in %g s.", self.name,
                          error, wait)  # fmt: skip
            else:
                wait, failing = self.interval, False
                self.restarts += 1
                log.warning("%s runs again.", self.name)
        self.server.stop()

    def stop(self) -> None:
        """Stop watching, and stop the server (from the thread that started it last)."""
        self._stopping.set()
        self._thread.join()


def _ended(process: subprocess.Popen) -> str:
    code = process.returncode
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
