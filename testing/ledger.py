"""A real devnet and real chaincode servers, started for a test and stopped after it.

``DevnetProcess`` runs ``flowblock network up`` as a child process (so a test can
kill -9 it and start it again on the same data directory); ``serve_chaincode`` runs
a chaincode server in this process. Both speak the real protocols on localhost.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flowblock.chaincode import Chaincode, ChaincodeServer, Contract
from flowblock.identity import Identity
from flowblock.ledger import Gateway

READY = re.compile(r"gateway on ([^ ,]+)")


@contextmanager
def serve_chaincode(
    contracts: list[Contract], chaincode_id: str = "asset"
) -> Iterator[ChaincodeServer]:
    """A chaincode server for ``contracts`` on a free localhost port."""
    server = ChaincodeServer(Chaincode(contracts), chaincode_id, "127.0.0.1:0").start()
    try:
        yield server
    finally:
        server.stop(grace=None)


class DevnetProcess:
    """``flowblock network up`` in a child process, on a data directory of its own."""

    def __init__(
        self,
        data_dir: Path,
        chaincodes: dict[str, str],
        *,
        batch_timeout: float = 0.02,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.chaincodes = chaincodes
        self.batch_timeout = batch_timeout
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> DevnetProcess:
        argv = [
            sys.executable, "-m", "flowblock", "network", "up",
            "--data-dir", str(self.data_dir),
            "--listen", "127.0.0.1:0",
            "--batch-timeout", str(self.batch_timeout),
            *(f"--chaincode={name}={address}" for name, address in self.chaincodes.items()),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        threading.Thread(target=self._follow, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or not self.address:
            self.kill()
            raise RuntimeError("the devnet did not start:\n" + "".join(self.output))
        return self

    def _follow(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = READY.search(line)
            if match:
                self.address = match.group(1)
                ready.set()
        ready.set()

    def gateway(self, identity: Identity) -> Gateway:
        return Gateway(self.address, identity, timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait: the devnet commits what it accepted and exits."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash a power cut or the OOM killer would cause."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def __enter__(self) -> DevnetProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def block_store_with(path: Path, count: int) -> None:
    """A block file of ``count`` small chained blocks, for tests of the store and verify."""
    from flowblock.ledger import blocks
    from flowblock.network.devnet.blockstore import BlockStore

    store = BlockStore(path)
    previous = b""
    for number in range(count):
        block = blocks.new_block(number, previous, [f"tx{number}".encode()])
        store.append(block)
        previous = blocks.header_hash(block.header)
    store.close()
