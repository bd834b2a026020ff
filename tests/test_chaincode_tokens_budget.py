"""FlowBlock's rules for tokens and budgets, each proven in-process and on a devnet.

Every test takes ``world`` over a ``driver``: the ``local`` run (unit layer) drives the
contracts on an in-process ledger; the ``devnet`` run (integration layer) drives the
same calls through the Gateway client against a devnet process serving the chaincode
over the chaincode protocol. A refusal must carry the same status and say the same thing.
Fixtures: tests/conftest.py; the world: flowblock.testing.flowblock_ledger.World.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from flowblock.identity import CertificateAuthority
from flowblock.testing.flowblock_ledger import VITALS_SCHEMA, method_spec
from flowblock.vocabulary import Failure, FailureKind

# -- computation tokens ------------------------------------------------------------------


def test_token_lifecycle_to_a_result_and_receipts(world):
    world.setup()
    token = world.request()
    assert token["status"] == "PENDING"
    assert token["code_hash"] == method_spec(world.method)["code_hash"]
    approved = world.submit(world.hospital_admin, "Approve", token["token_id"])
    assert (approved["status"], approved["decided_by"]) == ("APPROVED", "admin@Hospital")
    claimed = world.submit(world.executor, "Claim", token["token_id"])
    assert claimed["claimed_by"] == "executor@Hospital"
    world.submit(world.executor, "ReportProgress", token["token_id"], 40, "reading")
    parts = world.complete(token["token_id"], ["patient1@Hospital"])
    done = world.token(token["token_id"])
    assert done["status"] == "DONE"
    assert world.token(token["token_id"])["result"]["encrypted"] == "ZW5jcnlwdGVk"
    audit = world.evaluate(world.auditor, "GetToken", token["token_id"])
    assert audit["result"]["cohort_size"] == 2
    assert "encrypted" not in audit["result"]
    trail = world.evaluate(world.alice, "TokenHistory", token["token_id"])
    assert [t["token"]["status"] for t in trail] == [
        "DONE",
        "RUNNING",
        "RUNNING",
        "APPROVED",
        "PENDING",
    ]
    (part,) = parts
    world.record_usage(token["token_id"], part)
    receipts = world.evaluate(world.patients[0], "consent:MyReceipts", 10, "")
    assert token["token_id"] in [r["token_id"] for r in receipts["receipts"]]
    others = world.evaluate(world.patients[1], "consent:MyReceipts", 10, "")["receipts"]
    assert token["token_id"] not in [r["token_id"] for r in others]


def test_rules_auto_approve_and_admins_deny(world):
    world.setup(
        rules={
            "auto_approve": {
                "methods": [],
                "purposes": ["hypertension study"],
                "organisations": ["University"],
            }
        }
    )
    assert world.request()["status"] == "PENDING"  # the method is not on the allow-list
    world.submit(
        world.hospital_admin,
        "SetRules",
        json.dumps(
            {
                "auto_approve": {
                    "methods": [world.method],
                    "purposes": ["hypertension study"],
                    "organisations": ["University"],
                }
            }
        ),
    )
    assert world.request()["status"] == "APPROVED"
    assert world.request(purpose="marketing")["status"] == "PENDING"
    pending = world.request(purpose="marketing")
    denied = world.submit(
        world.hospital_admin, "Deny", pending["token_id"], "not a research purpose"
    )
    assert (denied["status"], denied["reason"]) == ("DENIED", "not a research purpose")
    world.refused(409, "is DENIED", world.executor, "Claim", pending["token_id"])


def test_token_refusals(world):
    world.setup()
    world.refused(
        403,
        "needs the role researcher",
        world.patients[0],
        "Request",
        world.method,
        "",
        world.dataset,
        json.dumps({"column": "age"}),
        "x",
        "[]",
    )
    world.refused(
        400,
        "params.column must be given",
        world.alice,
        "Request",
        world.method,
        "",
        world.dataset,
        json.dumps({}),
        "x",
        "[]",
    )
    world.refused(
        400,
        "params must be made of column, epsilon, got 'colum'; did you mean 'column'?",
        world.alice,
        "Request",
        world.method,
        "",
        world.dataset,
        json.dumps({"colum": "age"}),
        "x",
        "[]",
    )
    world.refused(
        404,
        "did you mean",
        world.alice,
        "Request",
        world.method + "x",
        "",
        world.dataset,
        json.dumps({"column": "age"}),
        "x",
        "[]",
    )
    world.refused(
        404,
        "no dataset",
        world.alice,
        "Request",
        world.method,
        "",
        "nowhere",
        json.dumps({"column": "age"}),
        "x",
        "[]",
    )
    world.refused(
        400,
        "purpose must not be empty",
        world.alice,
        "Request",
        world.method,
        "",
        world.dataset,
        json.dumps({"column": "age"}),
        " ",
        "[]",
    )
    token = world.request()
    world.refused(403, "needs the role admin", world.alice, "Approve", token["token_id"])
    world.refused(403, "for Hospital's admin", world.university_admin, "Approve", token["token_id"])
    world.refused(409, "PENDING, not APPROVED", world.executor, "Claim", token["token_id"])
    world.submit(world.hospital_admin, "Approve", token["token_id"])
    world.refused(403, "for Hospital's executor", world.other_executor, "Claim", token["token_id"])
    world.submit(world.executor, "Claim", token["token_id"])
    world.refused(409, "RUNNING, not APPROVED", world.executor, "Claim", token["token_id"])
    second_executor = world.hospital_ca.issue("executor2", "executor")
    world.refused(
        403,
        "was claimed by executor@Hospital",
        second_executor,
        "Complete",
        token["token_id"],
        world.result(),
    )
    world.refused(
        403, "was claimed by executor@Hospital", second_executor, "Fail", token["token_id"], "x"
    )
    world.refused(
        400, "no NaN or Infinity", world.alice, "Request", world.method, "", world.dataset,
        '{"column": "age", "epsilon": NaN}', "x", "[]",
    )  # fmt: skip
    world.refused(
        409,
        "not the hash of",
        world.executor,
        "Complete",
        token["token_id"],
        world.result(code_hash="9" * 64),
    )
    world.refused(
        400,
        "result.cohort_size must be",
        world.executor,
        "Complete",
        token["token_id"],
        world.result(cohort_size=-1),
    )
    assert world.token(token["token_id"])["status"] == "RUNNING"
    world.refused(403, "may not see token", world.bob, "GetToken", token["token_id"], submit=False)
    assert (
        world.evaluate(world.university_admin, "GetToken", token["token_id"])["status"] == "RUNNING"
    )
    world.refused(
        403,
        "belongs to another researcher",
        world.bob,
        "Request",
        world.method,
        "",
        world.dataset,
        json.dumps({"column": "age"}),
        "x",
        json.dumps([token["token_id"]]),
    )
    world.refused(
        409,
        "is RUNNING, not DONE",
        world.alice,
        "Request",
        world.method,
        "",
        world.dataset,
        json.dumps({"column": "age"}),
        "x",
        json.dumps([token["token_id"]]),
    )
    bobs = world.evaluate(world.bob, "ListTokens", "", 100, "")["tokens"]
    assert all(t["requester"] == "bob@University" for t in bobs)
    alices = world.evaluate(world.alice, "ListTokens", "RUNNING", 100, "")["tokens"]
    assert token["token_id"] in [t["token_id"] for t in alices]


def test_a_failed_token_carries_its_failure_typed(world):
    world.setup()
    token_id = world.running()["token_id"]
    refused = Failure(FailureKind.DISCLOSURE_REFUSED, "too few patients.", rule="min_cohort")

    def fail(**changed):
        return json.dumps({**json.loads(refused.to_json()), **changed})

    for failure, match in [
        ("too few patients", "failure must be valid JSON"),
        (fail(kind="oops"), "failure.kind must be one of computation_failed, disclosure_refused"),
        (fail(rule=""), "failure.rule must name the disclosure rule"),
        (fail(kind="computation_failed"), "failure.rule must name the disclosure rule"),
        (fail(status=200), "failure.status must be 0 or the status of a refusal"),
        (fail(message=" "), "failure.message must not be empty"),
        (fail(message="x" * 501), "failure.message must be at most 500 characters"),
        (fail(reason="x"), "failure must be made of kind, rule, status and message"),
    ]:
        world.refused(400, match, world.executor, "Fail", token_id, failure)
    failed = world.submit(world.executor, "Fail", token_id, refused.to_json())
    assert failed["failure"] == {"kind": "disclosure_refused", "rule": "min_cohort", "status": 0,
                                 "message": "too few patients."}  # fmt: skip
    assert failed["reason"] == "too few patients."  # the words, for people
    assert world.token(token_id)["failure"] == failed["failure"]
    world.refused(409, "is FAILED", world.executor, "Fail", token_id, refused.to_json())
    assert world.request()["failure"] is None


@pytest.mark.unit
def test_a_token_expires(local):
    world, ledger = local
    world.setup()
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    token = json.loads(
        ledger.invoke(
            world.alice,
            "Request",
            world.method,
            "",
            world.dataset,
            json.dumps({"column": "age"}),
            "x",
            "[]",
            timestamp=start,
        )
    )
    later = start + dt.timedelta(hours=73)
    with pytest.raises(Exception, match="is EXPIRED, not PENDING"):
        ledger.invoke(world.hospital_admin, "Approve", token["token_id"], timestamp=later)
    shown = json.loads(
        ledger.invoke(world.alice, "GetToken", token["token_id"], submit=False, timestamp=later)
    )
    assert shown["status"] == "EXPIRED"


def test_a_request_dated_ahead_of_the_ledger_cannot_outlive_its_expiry(local):
    # A proposal's time is its client's: a requester dating theirs years ahead would get
    # a token that never expires. Approving or claiming it, on the ledger's time, refuses.
    world, ledger = local
    world.setup(rules={"auto_approve": {"methods": [world.method], "purposes": ["x"],
                                        "organisations": ["University"]}})  # fmt: skip
    today = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    arguments = (world.method, "", world.dataset, json.dumps({"column": "age"}), "x", "[]")
    ahead = json.loads(ledger.invoke(world.alice, "Request", *arguments,
                                     timestamp=today + dt.timedelta(days=3650)))  # fmt: skip
    assert ahead["status"] == "APPROVED"  # by the rules, on the requester's own clock
    with pytest.raises(Exception, match="ahead of the ledger's time"):
        ledger.invoke(world.executor, "Claim", ahead["token_id"], timestamp=today)
    fair = json.loads(ledger.invoke(world.alice, "Request", *arguments,
                                    timestamp=today + dt.timedelta(minutes=2)))  # fmt: skip
    claimed = ledger.invoke(world.executor, "Claim", fair["token_id"], timestamp=today)
    assert json.loads(claimed)["status"] == "RUNNING"


# -- privacy budget ----------------------------------------------------------------------


def test_budget_is_charged_with_the_result_and_never_overdrawn(world):
    world.setup()
    researcher = "alice@University"
    world.refused(
        403,
        "for Hospital's admin",
        world.university_admin,
        "budget:Grant",
        world.dataset,
        researcher,
        1.0,
    )
    world.submit(world.hospital_admin, "budget:Grant", world.dataset, researcher, 1.0)
    first = world.running(params={"column": "age", "epsilon": 0.7})
    world.submit(world.executor, "Complete", first["token_id"], world.result(epsilon=0.7))
    budget = world.evaluate(world.alice, "budget:Get", world.dataset, "")
    assert (budget["spent"], budget["left"]) == (0.7, pytest.approx(0.3))
    # Asking for more than is left is refused at once (402), not left waiting.
    world.refused(
        402, "less than the ε=0.5 asked", world.alice, "Request", world.method, "",
        world.dataset, json.dumps({"column": "age", "epsilon": 0.5}), "research", "[]",
    )  # fmt: skip
    third = world.running(params={"column": "age", "epsilon": 0.3})
    world.submit(world.hospital_admin, "budget:Grant", world.dataset, researcher, 0.0001)
    # The executor cannot charge more, or less, than the token was approved for.
    for wrong in (0.5, 0, 0.1):
        world.refused(
            400,
            "must be the ε the token was approved for, 0.3",
            world.executor,
            "Complete",
            third["token_id"],
            world.result(epsilon=wrong),
        )
    overdraw = world.running(params={"column": "age", "epsilon": 0.3})
    world.submit(world.executor, "Complete", third["token_id"], world.result(epsilon=0.3))
    refusal = world.refused(
        402, "left on", world.executor, "Complete", overdraw["token_id"], world.result(epsilon=0.3)
    )
    assert "ε=0.0001 left" in refusal.message
    assert world.evaluate(world.alice, "budget:Get", world.dataset, "")["left"] == pytest.approx(
        0.0001
    )
    assert world.token(overdraw["token_id"])["status"] == "RUNNING"
    world.refused(
        403,
        "may not see the budget",
        world.bob,
        "budget:Get",
        world.dataset,
        researcher,
        submit=False,
    )


def test_a_flow_reads_only_outputs_its_data_organisation_keeps(world):
    world.setup()
    university = CertificateAuthority.load(world.people.data_dir, "University")
    steward = university.issue("ustew", "steward")
    world.submit(steward, "records:RegisterDataset", "uvitals", "tabular",
                 json.dumps(VITALS_SCHEMA))  # fmt: skip
    # What runs on the University's data is what the University published.
    world.submit(world.university_admin, "catalogue:Publish", json.dumps(method_spec(world.method)))
    theirs = world.submit(
        world.alice, "Request", world.method, "", "uvitals", json.dumps({"column": "age"}),
        "x", "[]",
    )  # fmt: skip
    world.submit(world.university_admin, "Approve", theirs["token_id"])
    world.submit(world.other_executor, "Claim", theirs["token_id"])
    world.submit(world.other_executor, "Complete", theirs["token_id"], world.result())
    world.refused(
        400, "was computed by University, not Hospital", world.alice, "Request", world.method,
        "", world.dataset, json.dumps({"column": "age"}), "x", json.dumps([theirs["token_id"]]),
    )  # fmt: skip


def test_a_dp_request_without_budget_is_refused_until_a_grant_and_waits_saying_for_whom(world):
    world.setup()
    dp = {"column": "age", "epsilon": 0.2}
    asked = (world.alice, "Request", world.method, "", world.dataset, json.dumps(dp), "x", "[]")
    world.refused(402, "less than the ε=0.2 asked", *asked)
    world.submit(world.hospital_admin, "budget:Grant", world.dataset, "alice@University", 0.5)
    waiting = world.submit(*asked)  # the rules do not approve it: an admin must
    assert waiting["status"] == "PENDING"
    assert waiting["awaiting"] == "approval by an admin of Hospital"
    approved = world.submit(world.hospital_admin, "Approve", waiting["token_id"])
    assert approved["status"] == "APPROVED" and "awaiting" not in approved


def test_the_rules_can_make_a_dataset_or_a_class_dp_only(world):
    world.setup(rules={"auto_approve": {"methods": [world.method], "purposes": ["research"],
                                        "organisations": ["University"], "max_epsilon": 1},
                       "dp_only": {"datasets": [world.dataset]}})  # fmt: skip
    world.submit(world.hospital_admin, "budget:Grant", world.dataset, "alice@University", 1.0)
    world.refused(403, "only with differential privacy", world.alice, "Request", world.method,
                  "", world.dataset, json.dumps({"column": "age"}), "research", "[]")  # fmt: skip
    dp = json.dumps({"column": "age", "epsilon": 0.5})
    token = world.submit(world.alice, "Request", world.method, "", world.dataset, dp, "research",
                         "[]")  # fmt: skip
    assert token["status"] == "APPROVED"
    rules = world.submit(
        world.hospital_admin, "SetRules", json.dumps({"dp_only": {"classes": ["statistics"]}})
    )
    try:  # the Hospital's rules are shared by the tests on one ledger: set back after
        assert rules["dp_only"] == {"datasets": [], "classes": ["statistics"]}
        world.refused(403, "only with differential privacy", world.alice, "Request",
                      world.method, "", world.dataset, json.dumps({"column": "age"}),
                      "research", "[]")  # fmt: skip
    finally:
        world.submit(world.hospital_admin, "SetRules", json.dumps({}))
    world.refused(400, "rules.auto_approve and rules.dp_only must be JSON objects",
                  world.hospital_admin, "SetRules", json.dumps({"dp_only": []}))  # fmt: skip


def test_a_request_grouped_by_a_column_no_schema_lists_values_for_is_refused(world):
    world.setup()
    spec = method_spec(f"grouped{world.method}", parameters={"type": "object"})
    world.submit(world.hospital_admin, "catalogue:Publish", json.dumps(spec))
    for column in ("patient_id", "age", "diagnosis"):  # an id, a number, values unlisted
        world.refused(
            400, f"params.group_by {column!r} must be a boolean column or a category column",
            world.alice, "Request", spec["name"], "", world.dataset,
            json.dumps({"group_by": [column]}), "research", "[]",
        )  # fmt: skip
    token = world.submit(world.alice, "Request", spec["name"], "", world.dataset,
                         json.dumps({"group_by": ["sex", "smoker"]}), "research", "[]")  # fmt: skip
    assert token["status"] == "PENDING"


def test_a_flow_names_each_input_token_once(world):
    world.setup(rules={"auto_approve": {"methods": [world.method], "purposes": ["research"],
                                        "organisations": ["University"]}})  # fmt: skip
    done = world.running(purpose="research")["token_id"]
    world.submit(world.executor, "Complete", done, world.result())
    world.refused(
        400, "inputs must name each token once", world.alice, "Request", world.method, "",
        world.dataset, json.dumps({"column": "age"}), "research", json.dumps([done, done]),
    )  # fmt: skip
    once = world.submit(world.alice, "Request", world.method, "", world.dataset,
                        json.dumps({"column": "age"}), "research", json.dumps([done]))  # fmt: skip
    assert once["inputs"] == [done]
