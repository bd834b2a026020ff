"""A stack asked to stop (SIGTERM, as ``flowblock down`` sends) while computations run
and many more wait stops within its grace period, cleanly, and loses none of them: the
next start takes up the tokens the stop left APPROVED or RUNNING.

A stop used to run the executor's whole queue first; with a backlog (the soak's last
minutes on a busy machine) that took longer than anyone waits, and ended in SIGKILL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from flowblock.ledger import Gateway
from flowblock.stack.system import EXECUTOR_STOP_GRACE
from flowblock.testing.load import DATASET, ENDED, all_tokens, wait_for_tokens_to_end
from flowblock.testing.stack_process import StackProcess
from flowblock.testing.waiting import wait_until

#: Computations asked for at once: far more than one worker runs in the grace period.
BACKLOG = 150
#: What a stop may take besides the executors' grace: the S3 server, the devnet, the
#: chaincode server and the interpreter's exit, on a busy two-core machine.
OTHER_PARTS = 30.0


@pytest.fixture
def stack(tmp_path, monkeypatch) -> Iterator[StackProcess]:
    """The demo with one executor worker, so that a backlog forms at once."""
    config = tmp_path / "flowblock_config.py"
    config.write_text("c.ExecutorSettings.workers = 1\n")
    monkeypatch.setenv("FLOWBLOCK_CONFIG", str(config))
    stack = StackProcess(tmp_path / "data", tmp_path).start()
    monkeypatch.delenv("FLOWBLOCK_CONFIG")  # its next start has the usual workers
    try:
        yield stack
    finally:
        stack.stop()


def ask_for_computations(stack: StackProcess, count: int) -> list[str]:
    """``count`` computations asked for by alice (approved at once): their token ids."""
    with Gateway.connect(stack.gateway, stack.wallet("alice", "University"), timeout=60) as gate:
        contract = gate.get_network(stack.channel).get_contract("flowblock")
        params = json.dumps({"column": "age"})
        submitted = [contract.submit_async("Request", "mean", "", DATASET, params, "research", "[]")
                     for _ in range(count)]  # fmt: skip
        assert all(each.status().successful for each in submitted)
        return [json.loads(each.result)["token_id"] for each in submitted]


def statuses(stack: StackProcess, tokens: list[str]) -> list[str]:
    with Gateway.connect(stack.gateway, stack.wallet("auditor", "Hospital"), timeout=60) as gate:
        found = all_tokens(gate.get_network(stack.channel).get_contract("flowblock"))
    return [found[token] for token in tokens]


def test_a_stop_with_a_backlog_of_computations_is_prompt_and_loses_none(stack):
    tokens = ask_for_computations(stack, BACKLOG)
    wait_until(lambda: set(statuses(stack, tokens)) - {"APPROVED"}, timeout=120,
               what="a computation claimed")  # fmt: skip
    asked_to_stop = time.monotonic()
    code = stack.stop(timeout=EXECUTOR_STOP_GRACE + OTHER_PARTS + 60)
    took = time.monotonic() - asked_to_stop
    assert code == 0, stack.output()[-3000:]
    assert took < EXECUTOR_STOP_GRACE + OTHER_PARTS, f"the stop took {took:.0f} s"
    assert "Demo stopped." in stack.output()

    stack.start()  # on the same data directory
    left = [status for status in statuses(stack, tokens) if status not in ENDED]
    print(f"stopped in {took:.1f} s; {len(left)} of {BACKLOG} computations left to the restart")
    with Gateway.connect(stack.gateway, stack.wallet("auditor", "Hospital"), timeout=60) as gate:
        auditor = gate.get_network(stack.channel).get_contract("flowblock")
        assert wait_for_tokens_to_end(auditor, tokens, timeout=300) == []
    assert set(statuses(stack, tokens)) == {"DONE"}
