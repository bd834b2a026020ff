"""A steady load on a running demo stack, and the checks that nothing it was told is lost.

:class:`Load` has the demo's patients grant consent (for a purpose of its own, so the
researchers' cohorts stay as they are), its researchers ask for computations (approved
at once by the demo's rules) and read their tokens, each in a thread of its own, through
the real Fabric Gateway. Every transaction the ledger acknowledged as committed is
remembered by its id, and every token a request created. After kills and restarts,
:func:`lost_transactions` names the acknowledged transactions the block store does not
hold as valid, and :func:`token_problems` the tokens that did not end, or ended twice.

A call that fails (the stack is down) is counted by its kind of error, and the thread
connects again before its next call. Requests are a closed loop: a researcher with
:data:`OUTSTANDING` computations not yet ended asks for no more until one ends, so the
load asks for computations no faster than the executor runs them on the machine at hand
(an open loop on two shared cores queued hundreds, a backlog and not a leak). The
randomness (which method, how long a pause) comes from one seeded generator per thread,
so a run can be replayed.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowblock.consent import grant_transient
from flowblock.ledger import Contract, Gateway, all_pages
from flowblock.ledger.validation import transaction_id_of

if TYPE_CHECKING:
    from flowblock.testing.stack_process import StackProcess

#: The purpose of the load's consents: one no computation asks for.
LOAD_PURPOSE = "load test"
#: What the load's researchers ask for, on the demo's tabular dataset.
DATASET = "vitals"
METHODS = ("mean", "std", "sum")
COLUMNS = ("systolic", "diastolic", "heart_rate", "bmi", "age")
PATIENTS = ("patient1", "patient2", "patient3")
RESEARCHERS = ("alice", "bob")
#: How a token the demo's rules approved must end, whatever crashed meanwhile.
ENDED = ("DONE", "FAILED")
#: How many of a researcher's computations may be waiting to end before they ask again.
OUTSTANDING = 4


@dataclass
class Tally:
    """What the load did: acknowledged transactions, tokens, reads, errors by kind."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # tx id -> function
    tokens: dict[str, list[str]] = field(default_factory=dict)  # researcher -> token ids
    reads: int = 0
    held_back: int = 0  # requests not made because the researcher's earlier ones ran
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    """Patients granting, researchers requesting and reading, against ``stack``, until
    :meth:`stop`."""

    def __init__(self, stack: StackProcess, seed: int, pause: float = 0.2) -> None:
        self.stack = stack
        self.seed = seed
        self.pause = pause
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Load:
        workers = [(self._grant, "Hospital", name) for name in PATIENTS]
        workers += [(self._request, "University", name) for name in RESEARCHERS]
        workers += [(self._read, "University", name) for name in RESEARCHERS]
        for number, (work, org, name) in enumerate(workers):
            thread = threading.Thread(
                target=self._loop, args=(work, org, name, random.Random(self.seed + number)),  # noqa: S311
                name=f"load-{name}-{work.__name__.strip('_')}", daemon=True,
            )  # fmt: skip
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 90.0) -> Tally:
        """Stop every thread (each finishes the call it is in) and return the tally."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        return self.tally

    def snapshot(self) -> tuple[int, int, int, int]:
        """(acknowledged transactions, tokens, reads, errors) so far."""
        with self._lock:
            tally = self.tally
            tokens = sum(map(len, tally.tokens.values()))
            return len(tally.acknowledged), tokens, tally.reads, tally.errors.total()

    def _loop(self, work, org: str, name: str, rng: random.Random) -> None:
        gateway: Gateway | None = None
        while not self._stopping.is_set():
            try:
                if gateway is None:
                    gateway = Gateway.connect(
                        self.stack.gateway, self.stack.wallet(name, org), timeout=20
                    )
                contract = gateway.get_network(self.stack.channel).get_contract("flowblock")
                work(contract, name, rng)
            except Exception as error:  # the stack is down or restarting: count, reconnect
                with self._lock:
                    self.tally.errors[f"{type(error).__name__}: {str(error)[:60]}"] += 1
                if gateway is not None:
                    gateway.close()
                    gateway = None
                self._stopping.wait(0.5)
            self._stopping.wait(rng.uniform(0, 2 * self.pause))
        if gateway is not None:
            gateway.close()

    def _acknowledge(
        self, contract: Contract, function: str, *args: str, **options: Any
    ) -> bytes | None:
        """Submit; the result if the ledger says the transaction committed valid."""
        submitted = contract.submit_async(function, *args, **options)
        if not submitted.status().successful:
            return None
        with self._lock:
            self.tally.acknowledged[submitted.tx_id] = function
        return submitted.result

    def _grant(self, contract: Contract, name: str, rng: random.Random) -> None:
        self._acknowledge(
            contract, "consent:Grant", endorsing_organisations=["HospitalMSP"],
            transient=grant_transient(DATASET, "org:University", "C", LOAD_PURPOSE),
        )  # fmt: skip

    def _request(self, contract: Contract, name: str, rng: random.Random) -> None:
        if self._running(contract, name) >= OUTSTANDING:
            with self._lock:
                self.tally.held_back += 1
            return
        params = json.dumps({"column": rng.choice(COLUMNS)})
        result = self._acknowledge(
            contract, "Request", rng.choice(METHODS), "", DATASET, params, "research", "[]"
        )
        if result is not None:
            with self._lock:
                self.tally.tokens.setdefault(name, []).append(json.loads(result)["token_id"])

    def _running(self, contract: Contract, name: str) -> int:
        """How many of ``name``'s last computations have not ended yet."""
        with self._lock:
            recent = list(self.tally.tokens.get(name, [])[-OUTSTANDING:])
        statuses = (json.loads(contract.evaluate("GetToken", token))["status"] for token in recent)
        return sum(status not in ENDED for status in statuses)

    def _read(self, contract: Contract, name: str, rng: random.Random) -> None:
        with self._lock:
            tokens = list(self.tally.tokens.get(name, [])[-20:])
        if tokens and rng.random() < 0.7:
            contract.evaluate("GetToken", rng.choice(tokens))
        else:
            contract.evaluate("records:GetDataset", DATASET)
        with self._lock:
            self.tally.reads += 1


def valid_transactions(data_dir: Path, channel: str = "flowblock") -> set[str]:
    """The ids of every transaction the devnet's block store holds as valid.

    Read-only, so it may be read while the devnet runs (a block being written is not
    counted yet).
    """
    from fabric_protos.common import common_pb2

    from flowblock.network.devnet.blockstore import BlockStore
    from flowblock.network.devnet.ledger import BLOCKS_FILE, FILTER

    store = BlockStore(data_dir / "devnet" / channel / BLOCKS_FILE, read_only=True)
    found = set()
    try:
        for block in store.blocks(1):  # block 0 is the channel's configuration
            codes = block.metadata.metadata[FILTER]
            for number, raw in enumerate(block.data.data):
                if codes[number] == 0:  # VALID
                    found.add(transaction_id_of(common_pb2.Envelope.FromString(raw)))
    finally:
        store.close()
    return found


def lost_transactions(data_dir: Path, tally: Tally, channel: str = "flowblock") -> list[str]:
    """The acknowledged transactions (``function tx-id``) the ledger does not hold."""
    held = valid_transactions(data_dir, channel)
    return [f"{function} {tx_id}" for tx_id, function in tally.acknowledged.items()
            if tx_id not in held]  # fmt: skip


def all_tokens(contract: Contract) -> dict[str, str]:
    """Every token ``contract``'s identity may see (an auditor: all), with its status."""
    found = all_pages(lambda mark: json.loads(contract.evaluate("ListTokens", "", 500, mark)),
                      "tokens")  # fmt: skip
    return {token["token_id"]: token["status"] for token in found}


def failure_reasons(contract: Contract, tokens: list[str]) -> Counter[str]:
    """Why the FAILED ones of ``tokens`` failed, counted by their sentence."""
    reasons: Counter[str] = Counter()
    for token_id in tokens:
        token = json.loads(contract.evaluate("GetToken", token_id))
        if token["status"] == "FAILED":
            reasons[token.get("reason") or token.get("error") or "(no reason)"] += 1
    return reasons


def token_problems(contract: Contract, tokens: list[str] | None = None) -> list[str]:
    """What is wrong with ``tokens`` (default: :func:`all_tokens`): one that has not
    ended, or whose history has it DONE more than once."""
    if tokens is None:
        tokens = list(all_tokens(contract))
    problems = []
    for token_id in tokens:
        status = json.loads(contract.evaluate("GetToken", token_id))["status"]
        history = json.loads(contract.evaluate("TokenHistory", token_id))
        done = [change["token"]["status"] for change in history].count("DONE")
        if done > 1:
            problems.append(f"token {token_id[:12]} was completed {done} times")
        if status not in ENDED:
            problems.append(f"token {token_id[:12]} is still {status}")
    return problems


def unended(contract: Contract, tokens: list[str] | None = None) -> list[str]:
    """The tokens (default: every one) not DONE or FAILED yet, from one paged listing."""
    statuses = all_tokens(contract)
    chosen = statuses if tokens is None else tokens
    return [token for token in chosen if statuses.get(token) not in ENDED]


def wait_for_tokens_to_end(
    contract: Contract, tokens: list[str] | None = None, timeout: float = 120.0
) -> list[str]:
    """Wait up to ``timeout`` seconds for every token to end; the problems left then.

    While it waits it only lists the tokens' statuses (a few calls a second): asking
    every token's history each time would load the executor it is waiting for. The
    full check of :func:`token_problems` runs once, at the end.
    """
    deadline = time.monotonic() + timeout
    while unended(contract, tokens) and time.monotonic() < deadline:
        time.sleep(1.0)
    return token_problems(contract, tokens)
