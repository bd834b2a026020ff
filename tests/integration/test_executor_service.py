"""The executor service never drops a token: one whose claim did not go through (a
conflicting transaction, a peer that had not seen the token yet, a gateway that did not
answer) is tried again, and a token approved while no event reached the service is
found by its sweep of the ledger. On the real devnet and S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowblock.errors import CommitError, EndorseError
from flowblock.ledger import GatewayPool
from flowblock.testing.study import Study, publish_and_allow
from flowblock.testing.waiting import wait_until

PURPOSE = "service study"


@pytest.fixture(scope="module")
def ledger(flowblock_devnet, demo_world):
    """Gateways by person, the catalogue published and the Hospital's rules set, once."""
    with GatewayPool(flowblock_devnet.address) as pool:
        allowed = {"methods": ["mean", "count"], "purposes": [PURPOSE],
                   "organisations": ["University"]}  # fmt: skip
        publish_and_allow(pool, demo_world, {"auto_approve": allowed})
        yield pool


@pytest.fixture
def study(ledger, s3_server, demo_world) -> Study:
    """A table of 40 patients, 30 of whom consent."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(40)],
            "age": rng.integers(20, 90, 40),
            "sex": ["F", "M"] * 20,
            "systolic": rng.normal(130, 12, 40).round(1),
        }
    )
    return Study(ledger, s3_server, demo_world, frame, consenting=30, prefix="svc")


#: The peers' refusal of a claim endorsed before they had the token's block.
NOT_SEEN = "chaincode response 404, there is no computation token"
#: What the gateway raises when a claim does not go through, by cause.
CLAIM_FAILURES = {
    "an MVCC conflict at commit": CommitError(
        "transaction was not committed: MVCC_READ_CONFLICT", "0" * 64, "MVCC_READ_CONFLICT"
    ),
    "a peer that has not seen the token yet": EndorseError(
        f"HospitalMSP: {NOT_SEEN}", "0" * 64, (("HospitalMSP", NOT_SEEN),), "ABORTED"
    ),
    "a gateway that does not answer": EndorseError(
        "the Fabric gateway does not answer (failed to connect to all addresses)",
        "0" * 64,
        status="UNAVAILABLE",
    ),
}


def far_ahead(folder: Path) -> Path:
    """A checkpoint far ahead of the ledger: no event reaches the service that reads it."""
    checkpoint = folder / "checkpoint.json"
    checkpoint.write_text(json.dumps({"block": 10**9, "tx_id": ""}))
    return checkpoint


def status_of(study: Study, token_id: str) -> str:
    return json.loads(study.executor.contract.evaluate("GetToken", token_id))["status"]


@pytest.mark.parametrize("failure", list(CLAIM_FAILURES))
def test_a_token_whose_claim_did_not_go_through_is_claimed_again(study, tmp_path, failure):
    from flowblock.executor.service import ExecutorService

    executor = study.executor
    answer = executor.ledger
    failed: list[str] = []

    def first_claim_fails(function, *args, **kwargs):
        if function == "Claim" and not failed:  # the transaction never reaches the ledger
            failed.append(args[0])
            raise CLAIM_FAILURES[failure]
        return answer(function, *args, **kwargs)

    executor.ledger = first_claim_fails
    # Approved before the service starts, which takes it up then; no event comes after.
    job = study.alice.compute("count", study.dataset, {}, purpose=PURPOSE)
    service = ExecutorService(executor, far_ahead(tmp_path), workers=2,
                              retry_delays=(0.5,)).start()  # fmt: skip
    try:
        assert job.wait(timeout=60).value["groups"][0]["count"] == 30
        # The token whose claim failed (this one, unless one was left waiting before).
        wait_until(lambda: status_of(study, failed[0]) == "DONE", timeout=60)
    finally:
        service.stop()


def test_a_token_approved_while_no_event_came_is_found_by_the_sweep(study, tmp_path):
    from flowblock.executor.service import ExecutorService

    service = ExecutorService(study.executor, far_ahead(tmp_path), workers=2,
                              sweep_every=1.0).start()  # fmt: skip
    try:
        job = study.alice.compute("mean", study.dataset, {"column": "age"}, purpose=PURPOSE)
        assert job.wait(timeout=60).cohort_size == 30
    finally:
        service.stop()


def test_a_stop_leaves_queued_tokens_approved_for_the_next_start(study, tmp_path):
    from flowblock.executor.service import ExecutorService

    checkpoint = tmp_path / "checkpoint.json"
    # Approved while no executor ran: its start queues them all for its one worker.
    jobs = [study.alice.compute("count", study.dataset, {}, purpose=PURPOSE) for _ in range(6)]
    service = ExecutorService(study.executor, checkpoint, workers=1).start()
    wait_until(lambda: any(status_of(study, job.token_id) != "APPROVED" for job in jobs),
               timeout=60, what="a token claimed")  # fmt: skip
    service.stop(grace=30)
    statuses = [status_of(study, job.token_id) for job in jobs]
    assert "APPROVED" in statuses and "RUNNING" not in statuses, statuses
    again = ExecutorService(study.executor, checkpoint, workers=2).start()
    try:
        for job in jobs:
            assert job.wait(timeout=60).value["groups"][0]["count"] == 30
    finally:
        again.stop()
