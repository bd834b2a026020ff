"""The chaincode server killed -9 under load, apart from the devnet that dials it: the
devnet says so, in a sentence and at once, and works again when it is back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flowblock.errors import FlowBlockError
from flowblock.ports import free_ports
from flowblock.testing.ledger import DevnetProcess
from flowblock.testing.waiting import wait_until


@contextmanager
def chaincode_server(address: str) -> Iterator[subprocess.Popen[str]]:
    """``flowblock chaincode serve`` of the asset-transfer chaincode, in a process of its own."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flowblock", "chaincode", "serve", "--address", address,
         "--chaincode-id", "asset", "--contract", "flowblock.testing.asset_transfer:AssetTransfer"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving" in line, line + process.stdout.read()
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_killed_chaincode_server_is_refused_in_a_sentence_and_served_again(
    demo_world, tmp_path, rng
):
    data_dir = tmp_path / "devnet-data"
    shutil.copytree(demo_world.data_dir, data_dir)
    address = f"127.0.0.1:{free_ports()[0]}"
    alice = demo_world.identity("alice")
    committed: list[str] = []
    stop = threading.Event()

    def load(contract, worker: int) -> None:
        for n in range(100_000):
            if stop.is_set():
                return
            asset = f"w{worker}-{n}"
            try:
                if contract.submit_async("Create", asset, "alice", n).status().successful:
                    committed.append(asset)
            except FlowBlockError:
                stop.wait(0.2)  # the chaincode is gone: the devnet said so; go on asking

    with chaincode_server(address) as server, DevnetProcess(data_dir, {"asset": address}) as devnet:
        contract = devnet.gateway(alice).get_network("flowblock").get_contract("asset")
        workers = [threading.Thread(target=load, args=(contract, w)) for w in range(3)]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: len(committed) >= 20, timeout=60, what="transactions committed")
            time.sleep(rng.uniform(0, 1))
            server.kill()
            server.wait()

            # While it is gone: refused at once, in one sentence naming what is missing.
            started = time.monotonic()
            with pytest.raises(FlowBlockError) as refused:
                contract.submit("Create", "while-gone", "alice", 1)
            assert time.monotonic() - started < 15
            message = str(refused.value)
            assert "chaincode" in message and "\n" not in message, message
            with pytest.raises(FlowBlockError):
                contract.evaluate("All")

            # Back on its address: the devnet dials it again, and nothing committed is lost.
            with chaincode_server(address):
                wait_until(lambda: _answers(contract), timeout=60, what="the chaincode again")
                count = len(committed)
                wait_until(lambda: len(committed) > count + 5, timeout=60, what="load again")
                stop.set()
                for worker in workers:
                    worker.join(timeout=60)
                assets = {asset["id"] for asset in json.loads(contract.evaluate("All"))}
                assert set(committed) <= assets
        finally:
            stop.set()


def _answers(contract) -> bool:
    try:
        contract.evaluate("All")
    except FlowBlockError:
        return False
    return True
