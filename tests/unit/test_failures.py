"""Refusals are told apart by kind and status, never by their words: reword one on the data
side or in the chaincode, and the client still raises the same error with the same rule,
and the magics still say the same thing (the real chaincode in-process, the real executor,
client and magics over flowblock.testing's LocalGateway)."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError

from flowblock.chaincode.contracts import budget, catalogue, records
from flowblock.chaincode.contracts.base import NotFound, OutOfBudget
from flowblock.client import Client
from flowblock.errors import (
    BudgetExhausted,
    ComputationFailed,
    ConsentDenied,
    DisclosureRefused,
    RequestRefused,
)
from flowblock.executor.reads import process_read
from flowblock.executor.worker import Executor
from flowblock.extension.magics import FlowBlockMagics
from flowblock.extension.status import describe
from flowblock.testing.chaincode import LocalGateway
from flowblock.testing.flowblock_ledger import LocalDriver, World
from flowblock.testing.study import MemoryStore
from flowblock.vocabulary import ChaincodeStatus, Failure, FailureKind

pytestmark = pytest.mark.unit

REWORDED = "Das Ergebnis bleibt beim Krankenhaus, ganz ohne die üblichen Worte"


class Store(MemoryStore):
    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


@pytest.fixture
def world(tmp_path, demo_world):
    driver = LocalDriver(tmp_path)
    yield World(driver, demo_world).setup()
    driver.close()


def client_of(world: World, who) -> Client:
    return Client(LocalGateway(world.driver.ledger, who))


def executor_of(world: World) -> Executor:
    gateway = LocalGateway(world.driver.ledger, world.executor)
    contract = gateway.get_network("flowblock").get_contract("flowblock")
    return Executor(contract, Store(), "Hospital", algorithms={})


def usage_error(magics: FlowBlockMagics, line: str) -> str:
    with pytest.raises(UsageError) as shown:
        magics.flowblock(line)
    return str(shown.value)


def test_a_reworded_disclosure_refusal_is_still_one_naming_its_rule(world, monkeypatch):
    executor = executor_of(world)

    def withheld(token: dict) -> None:
        raise DisclosureRefused("min_cohort", REWORDED)

    monkeypatch.setattr(executor, "_complete", withheld)
    token_id = world.approved()["token_id"]
    assert executor.process(token_id) == "FAILED"
    alice = client_of(world, world.alice)
    token = alice.job(token_id).token
    assert token["failure"] == {"kind": "disclosure_refused", "rule": "min_cohort",
                                "status": 0, "message": REWORDED}  # fmt: skip
    with pytest.raises(DisclosureRefused) as refused:
        alice.job(token_id).result()
    assert (refused.value.rule, str(refused.value)) == ("min_cohort", REWORDED)
    assert describe(token) == "withheld by disclosure control (rule min_cohort)"
    assert usage_error(FlowBlockMagics(client=alice), f"result {token_id}") == (
        f"the data side's disclosure control withheld the result (rule min_cohort): {REWORDED}"
    )


def test_a_reworded_budget_refusal_at_the_claim_is_still_budget_exhausted(world, monkeypatch):
    world.submit(world.hospital_admin, "budget:Grant", world.dataset, "alice@University", 1.0)
    first, second = (world.approved(params={"column": "age", "epsilon": 0.6})["token_id"]
                     for _ in range(2))  # fmt: skip
    world.submit(world.executor, "Claim", first)
    world.submit(world.executor, "Complete", first, world.result(epsilon=0.6))

    class Reworded(OutOfBudget):
        def __init__(self, message: str) -> None:
            super().__init__(REWORDED)

    monkeypatch.setattr(budget, "OutOfBudget", Reworded)
    assert executor_of(world).process(second) == "FAILED"
    alice = client_of(world, world.alice)
    token = alice.job(second).token
    assert (token["failure"]["kind"], token["failure"]["status"]) == ("budget_exhausted", 402)
    with pytest.raises(BudgetExhausted, match=f"^{REWORDED}.$"):
        alice.job(second).result()
    assert describe(token) == f"refused for want of privacy budget: {REWORDED}"
    assert usage_error(FlowBlockMagics(client=alice), f"result {second}") == f"{REWORDED}."


def test_a_reworded_not_found_still_suggests_the_dataset_meant(world, monkeypatch):
    class Reworded(NotFound):
        def __init__(self, message: str) -> None:
            super().__init__("nichts gefunden")

    monkeypatch.setattr(records, "NotFound", Reworded)
    alice = client_of(world, world.alice)
    with pytest.raises(RequestRefused) as refused:
        alice.budget(world.dataset + "x")
    assert refused.value.status == ChaincodeStatus.NOT_FOUND
    magics = FlowBlockMagics(client=alice)
    meant = f"nichts gefunden; did you mean {world.dataset!r}?"
    assert usage_error(magics, f"budget --dataset {world.dataset}x") == meant
    compute = f"compute {world.method} --dataset {world.dataset}x -p column=age"
    assert usage_error(magics, compute) == meant
    # The ledger looks for the method first: an unknown one is what it did not find.
    monkeypatch.setattr(catalogue, "NotFound", Reworded)
    unknown_method = f"compute {world.method}x --dataset {world.dataset}x -p column=age"
    assert usage_error(magics, unknown_method) == "nichts gefunden."


def test_a_read_whose_consent_was_revoked_fails_as_consent_denied(world):
    patient = world.patients[2]
    world.grant(patient, "user:bob@University", "R", "care")
    bob = client_of(world, world.bob)
    access = bob.records._request(
        "access:RequestRead", "Hospital",
        {"dataset": world.dataset, "patient": patient.patient, "purpose": "care"},
    )  # fmt: skip
    world.revoke(patient, "user:bob@University", "R")
    assert process_read(executor_of(world), access["access_id"]) == "FAILED"
    with pytest.raises(ConsentDenied):
        bob.records._settled(access, timeout=5)


def test_a_failure_of_a_kind_unknown_to_this_version_is_a_failed_computation():
    stored = {"kind": "quantum_decoherence", "rule": "", "status": 0, "message": "gone."}
    assert Failure.of(stored) == Failure(FailureKind.COMPUTATION_FAILED, "gone.")
    assert Failure.of(None) is None and Failure.of({"kind": "budget_exhausted"}) is None
    assert Failure.refused(402, "no ε left").kind == FailureKind.BUDGET_EXHAUSTED
    assert Failure.refused(403, "revoked") == Failure(
        FailureKind.COMPUTATION_FAILED, "revoked", status=403
    )
    assert len(Failure(FailureKind.COMPUTATION_FAILED, "x" * 900).message) == 500
    assert json.loads(Failure(FailureKind.BUDGET_EXHAUSTED, "none left").to_json()) == {
        "kind": "budget_exhausted", "rule": "", "status": 0, "message": "none left",
    }  # fmt: skip


def test_a_token_failed_before_failures_were_typed_is_a_computation_failed():
    from flowblock.client import failed

    old = {"status": "FAILED", "reason": "DisclosureRefused (min_cohort): too few."}
    error = failed("t" * 64, old)
    assert isinstance(error, ComputationFailed) and error.reason == old["reason"]
    denied = failed("t" * 64, {"status": "DENIED", "reason": "not research", "failure": None})
    assert (type(denied), denied.status) == (ComputationFailed, "DENIED")
