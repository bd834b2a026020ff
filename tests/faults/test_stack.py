"""The whole one-machine stack crashed under load: its S3 server killed alone, then the
stack itself killed -9 and started again on the same data directory.

One ``flowblock demo`` serves the module (starting one is the slow part); the tests run
in file order and the last one stops it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flowblock.client import Client
from flowblock.errors import FlowBlockError
from flowblock.executor.storage.objects import ObjectStore
from flowblock.identity.s3 import load_credentials
from flowblock.ledger import Contract, Gateway
from flowblock.testing.load import (
    ENDED,
    Load,
    all_tokens,
    lost_transactions,
    wait_for_tokens_to_end,
)
from flowblock.testing.stack_process import StackProcess, command_line, running
from flowblock.testing.waiting import wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    folder = tmp_path_factory.mktemp("faults-stack")
    stack = StackProcess(folder / "data", folder).start()
    try:
        yield stack
    finally:
        stack.stop()


@contextmanager
def contract(stack: StackProcess, name: str, org: str) -> Iterator[Contract]:
    with Gateway.connect(stack.gateway, stack.wallet(name, org), timeout=30) as gateway:
        yield gateway.get_network(stack.channel).get_contract("flowblock")


def seaweedfs(stack: StackProcess) -> int | None:
    """The pid of the stack's SeaweedFS, if one runs."""
    found = [pid for pid in stack.processes() if "/weed " in command_line(pid)]
    return found[0] if len(found) == 1 else None


def answers(store: ObjectStore) -> bool:
    try:
        return bool(store.list("vitals/"))
    except Exception:  # StorageError, or what ObjectStore lets through (botocore's)
        return False


def ended(job) -> str:
    """How a computation ended: "DONE", or the one sentence it failed with."""
    try:
        job.wait(120)
    except FlowBlockError as error:
        return str(error)
    return "DONE"


@pytest.fixture(scope="module")
def s3_outage(stack: StackProcess, module_rng: random.Random) -> dict:
    """SeaweedFS killed -9 (alone) while computations run and are asked for: how each
    ended, whether the stack started it again, and how the next computation ended."""
    endpoint = stack.description["s3"]["endpoint"]
    hospital = ObjectStore(endpoint, load_credentials(stack.data_dir, "Hospital"))
    with Client.connect(stack.wallet("alice", "University"), stack.gateway) as alice:
        warm = ended(alice.compute("mean", "vitals", {"column": "age"}))
        first = seaweedfs(stack)
        assert first is not None
        in_flight = [alice.compute("mean", "vitals", {"column": "systolic"}) for _ in range(3)]
        time.sleep(module_rng.uniform(0, 0.5))
        os.kill(first, signal.SIGKILL)
        while_down = [alice.compute("std", "vitals", {"column": "bmi"}) for _ in range(2)]
        wait_until(lambda: seaweedfs(stack) not in (None, first), timeout=30, what="SeaweedFS")
        wait_until(lambda: answers(hospital), timeout=60, what="S3 answering again")
        return {
            "before": warm,
            "killed": first,
            "during": [ended(job) for job in in_flight + while_down],
            "after": ended(alice.compute("mean", "vitals", {"column": "diastolic"})),
            "log": stack.output(),
        }


def test_seaweedfs_killed_under_computations_comes_back_on_its_endpoint(s3_outage):
    assert s3_outage["before"] == "DONE"
    # The stack started it again, on the endpoint the executor and stack.json know
    # (answers() asked there), and computing recovered: the next computation is done.
    assert "SeaweedFS exited (killed by SIGKILL); starting it again." in s3_outage["log"]
    assert not running(s3_outage["killed"])
    assert s3_outage["after"] == "DONE"


def test_a_computation_that_meets_s3_down_ends_done_or_says_s3_did_not_answer(s3_outage):
    for outcome in s3_outage["during"]:
        assert outcome == "DONE" or ("S3" in outcome and "\n" not in outcome), outcome


def test_kill_9_of_the_stack_under_load_loses_nothing_committed(stack, rng):
    load = Load(stack, seed=rng.randrange(2**32)).start()
    try:
        wait_until(lambda: load.snapshot()[0] >= 20 and load.snapshot()[1] >= 4, timeout=120,
                   what="the load under way")  # fmt: skip
        time.sleep(rng.uniform(0, 3))  # a random moment, with grants and requests in flight
        with contract(stack, "auditor", "Hospital") as auditor:
            in_flight = [t for t, status in all_tokens(auditor).items() if status not in ENDED]
        survivors = stack.kill()
        assert not survivors, f"outlived the stack's kill -9: {survivors}"
        killed_at = load.snapshot()[0]
        stack.start()  # on the same data directory, after kill -9
        wait_until(lambda: load.snapshot()[0] >= killed_at + 10, timeout=120,
                   what="the load going on after the restart")  # fmt: skip
    finally:
        tally = load.stop()
    print(f"{len(tally.acknowledged)} transactions acknowledged, {load.snapshot()[1]} tokens, "
          f"{tally.reads} reads; errors: {dict(tally.errors)}")  # fmt: skip

    # Every token ends DONE or FAILED (those in flight at the kill too), none done twice.
    print(f"{len(in_flight)} tokens were approved or running just before the kill")
    with contract(stack, "auditor", "Hospital") as auditor:
        assert wait_for_tokens_to_end(auditor, timeout=180) == []
        assert set(in_flight) <= set(all_tokens(auditor))
    assert stack.stop() == 0
    # Every transaction a client was told committed is in the ledger, which verifies.
    assert lost_transactions(stack.data_dir, tally) == []
    verify = subprocess.run(
        [sys.executable, "-m", "flowblock", "verify", "--data-dir", str(stack.data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ledger verified" in verify.stdout
