"""FlowBlock's chaincode rules, each proven twice: in-process and on a devnet.

Every test takes ``driver``: the ``local`` run (unit layer) drives the contracts on an
in-process ledger; the ``devnet`` run (integration layer) drives the same calls
through the Gateway client against a devnet process serving the chaincode over the
chaincode protocol. A refusal must carry the same status and say the same thing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json

import pytest

from flowblock.identity import CertificateAuthority
from flowblock.testing.flowblock_ledger import (
    VITALS_SCHEMA,
    GatewayDriver,
    LocalDriver,
    Refusal,
    method_spec,
    records_for,
)

_names = itertools.count()


@pytest.fixture(scope="module")
def devnet_driver(flowblock_devnet):
    driver = GatewayDriver(flowblock_devnet.address)
    yield driver
    driver.close()


@pytest.fixture(
    params=[
        pytest.param("local", marks=pytest.mark.unit),
        pytest.param("devnet", marks=pytest.mark.integration),
    ]
)
def driver(request, tmp_path):
    if request.param == "devnet":
        yield request.getfixturevalue("devnet_driver")
        return
    local = LocalDriver(tmp_path)
    yield local
    local.close()


class World:
    """The demo people, and a dataset and method of this test's own on the ledger."""

    def __init__(self, driver, demo_world) -> None:
        self.driver = driver
        self.people = demo_world
        n = next(_names)
        self.dataset = f"vitals-{n}"
        self.method = f"mean{n}"
        self.hospital_admin = demo_world.identity("admin", org="Hospital")
        self.university_admin = demo_world.identity("admin", org="University")
        self.executor = demo_world.identity("executor", org="Hospital")
        self.other_executor = demo_world.identity("executor", org="University")
        self.steward = demo_world.identity("steward")
        self.auditor = demo_world.identity("auditor")
        self.alice = demo_world.identity("alice")
        self.bob = demo_world.identity("bob")
        self.patients = [demo_world.identity(f"patient{i}") for i in (1, 2, 3)]
        self.hospital_ca = CertificateAuthority.load(demo_world.data_dir, "Hospital")

    def submit(self, who, function, *args):
        return self.driver.submit(who, function, *args)

    def evaluate(self, who, function, *args):
        return self.driver.evaluate(who, function, *args)

    def refused(self, status: int, match: str, who, function, *args, submit: bool = True):
        call = self.submit if submit else self.evaluate
        with pytest.raises(Refusal) as caught:
            call(who, function, *args)
        assert caught.value.status == status, caught.value
        assert match in caught.value.message, caught.value
        assert "\n" not in caught.value.message
        return caught.value

    def setup(self, *, consent: bool = True, rules: dict | None = None) -> World:
        self.submit(
            self.steward, "records:RegisterDataset", self.dataset, "tabular",
            json.dumps(VITALS_SCHEMA),
        )  # fmt: skip
        names = [p.name for p in self.patients]
        self.submit(
            self.steward, "records:RegisterRecords", self.dataset,
            json.dumps(records_for(names, self.dataset)),
        )  # fmt: skip
        self.submit(self.hospital_admin, "catalogue:Publish", json.dumps(method_spec(self.method)))
        if consent:
            for patient in self.patients[:2]:
                self.grant(patient, "org:University", "C", "research")
        if rules is not None:
            self.submit(self.hospital_admin, "SetRules", json.dumps(rules))
        return self

    def grant(self, patient, to, rights, purpose, until="", record_id=""):
        return self.submit(
            patient, "consent:Grant", self.dataset, to, rights, purpose, until, record_id
        )

    def request(self, who=None, params=None, purpose="hypertension study", inputs="[]"):
        return self.submit(
            who or self.alice, "Request", self.method, "", self.dataset,
            json.dumps(params or {"column": "age"}), purpose, inputs,
        )  # fmt: skip

    def result(self, **overrides):
        return json.dumps(
            {
                "encrypted": "ZW5jcnlwdGVk",
                "result_hash": "1" * 64,
                "cohort_hash": "2" * 64,
                "cohort_size": 2,
                "code_hash": hashlib.sha256(f"{self.method}@1.0".encode()).hexdigest(),
                "policy_hash": "3" * 64,
                **overrides,
            }
        )

    def approved(self, **request):
        token = self.request(**request)
        if token["status"] == "PENDING":
            token = self.submit(self.hospital_admin, "Approve", token["token_id"])
        return token

    def running(self, **request):
        return self.submit(self.executor, "Claim", self.approved(**request)["token_id"])

    def token(self, token_id, who=None):
        return self.evaluate(who or self.alice, "GetToken", token_id)


@pytest.fixture
def world(driver, demo_world) -> World:
    return World(driver, demo_world)


@pytest.fixture
def local(tmp_path, demo_world):
    """The in-process ledger alone, for tests that move the transaction clock."""
    driver = LocalDriver(tmp_path)
    yield World(driver, demo_world), driver.ledger
    driver.close()


# -- records ----------------------------------------------------------------------------


def test_records_register_once_update_with_history_and_tombstone(world):
    world.setup(consent=False)
    names = [p.name for p in world.patients]
    again = world.submit(
        world.steward, "records:RegisterRecords", world.dataset,
        json.dumps(records_for(names, world.dataset)),
    )  # fmt: skip
    assert again == {"registered": 0, "updated": 0, "unchanged": 3}
    changed = records_for(names[:1], world.dataset)
    changed[0]["sha256"] = "f" * 64
    update = world.submit(
        world.steward, "records:RegisterRecords", world.dataset, json.dumps(changed)
    )
    assert update["updated"] == 1
    record_id = changed[0]["record_id"]
    record = world.evaluate(world.patients[0], "records:GetRecord", world.dataset, record_id)
    assert (record["version"], record["sha256"]) == (2, "f" * 64)
    deleted = world.submit(world.steward, "records:DeleteRecord", world.dataset, record_id, "error")
    assert deleted["deleted"] is True
    history = world.evaluate(world.steward, "records:RecordHistory", world.dataset, record_id)
    assert [h["record"]["version"] for h in history] == [3, 2, 1]
    mine = world.evaluate(world.patients[0], "records:MyRecords", 100, "")
    assert record_id in [r["record_id"] for r in mine["records"]]


def test_records_refusals(world):
    world.setup(consent=False)
    good = records_for(["patient9"], world.dataset, start=100)
    world.refused(
        403, "needs the role steward", world.alice, "records:RegisterDataset", "x1", "tabular", "{}"
    )
    world.refused(
        409,
        "already exists",
        world.steward,
        "records:RegisterDataset",
        world.dataset,
        "tabular",
        json.dumps(VITALS_SCHEMA),
    )
    world.refused(
        403,
        "needs the role steward; mallory@Hospital is a patient",
        world.hospital_ca.issue("mallory", "patient"),
        "records:RegisterRecords",
        world.dataset,
        json.dumps(good),
    )
    other_steward = CertificateAuthority.load(world.people.data_dir, "University").issue(
        "ustew", "steward"
    )
    world.refused(
        403,
        "not ustew@University",
        other_steward,
        "records:RegisterRecords",
        world.dataset,
        json.dumps(good),
    )
    world.refused(
        400,
        "records must be valid JSON",
        world.steward,
        "records:RegisterRecords",
        world.dataset,
        "[{oops",
    )
    bad_hash = [{**good[0], "sha256": "xyz"}]
    world.refused(
        400,
        "records[0].sha256 must be a SHA-256 digest",
        world.steward,
        "records:RegisterRecords",
        world.dataset,
        json.dumps(bad_hash),
    )
    world.refused(
        400,
        "appears twice",
        world.steward,
        "records:RegisterRecords",
        world.dataset,
        json.dumps(good + good),
    )
    huge = json.dumps([good[0]] * 6000)
    world.refused(
        400, "larger than 512 KiB", world.steward, "records:RegisterRecords", world.dataset, huge
    )
    moved = [{**records_for(["patient1"], world.dataset)[0], "patient": "patient2"}]
    world.refused(
        409,
        "another patient",
        world.steward,
        "records:RegisterRecords",
        world.dataset,
        json.dumps(moved),
    )
    record_id = records_for(["patient1"], world.dataset)[0]["record_id"]
    world.refused(
        403,
        "may not see the records",
        world.alice,
        "records:GetRecord",
        world.dataset,
        record_id,
        submit=False,
    )
    world.refused(
        403,
        "may not see the records",
        world.patients[1],
        "records:GetRecord",
        world.dataset,
        record_id,
        submit=False,
    )
    assert (
        world.evaluate(world.patients[0], "records:GetRecord", world.dataset, record_id)["version"]
        == 1
    )


# -- consent ----------------------------------------------------------------------------


def cohort(world, requester="alice@University", purpose="hypertension study"):
    page = world.evaluate(
        world.executor, "consent:WhoMayCompute", world.dataset, requester, purpose, 100, ""
    )
    return sorted(entry["patient"] for entry in page["patients"])


def test_grant_list_revoke_and_history(world):
    world.setup(consent=False)
    p1, p2, p3 = world.patients
    grant = world.grant(p1, "org:University", "RC", "research", "2099-01-01")
    world.grant(p2, "user:alice@University", "C", "hypertension study")
    world.grant(p3, "user:bob@University", "C", "any")
    assert cohort(world) == ["patient1@Hospital", "patient2@Hospital"]
    assert cohort(world, purpose="cancer study") == ["patient1@Hospital"]
    assert cohort(world, requester="bob@University") == ["patient1@Hospital", "patient3@Hospital"]

    revoked = world.submit(p1, "consent:Revoke", world.dataset, "org:University", "C", "")
    assert [g["rights"] for g in revoked] == ["R"]
    assert cohort(world) == ["patient2@Hospital"]
    mine = world.evaluate(p1, "consent:MyGrants", 10, "")
    assert [(g["rights"], g["status"]) for g in mine["grants"]] == [("R", "ACTIVE")]
    world.submit(p1, "consent:RevokeGrant", grant["grant_id"])
    history = world.evaluate(p1, "consent:GrantHistory", grant["grant_id"])
    assert [h["grant"]["status"] for h in history] == ["REVOKED", "ACTIVE", "ACTIVE"]
    allowed = world.evaluate(
        world.executor,
        "consent:MayAccess",
        world.dataset,
        "patient2@Hospital",
        "alice@University",
        "C",
        "hypertension study",
    )
    assert allowed["allowed"] is True
    denied = world.evaluate(
        world.executor,
        "consent:MayAccess",
        world.dataset,
        "patient2@Hospital",
        "alice@University",
        "R",
        "hypertension study",
    )
    assert denied["allowed"] is False


def test_consent_refusals(world):
    world.setup(consent=False)
    p1, p2, _ = world.patients
    grant = world.grant(p1, "org:University", "C", "research")
    world.refused(
        403,
        "needs the role patient",
        world.alice,
        "consent:Grant",
        world.dataset,
        "org:University",
        "C",
        "research",
        "",
        "",
    )
    world.refused(
        400,
        "rights must be some of R",
        p1,
        "consent:Grant",
        world.dataset,
        "org:University",
        "X",
        "research",
        "",
        "",
    )
    world.refused(
        400,
        "grantee must be",
        p1,
        "consent:Grant",
        world.dataset,
        "University",
        "C",
        "research",
        "",
        "",
    )
    world.refused(
        400,
        "until must be in the future",
        p1,
        "consent:Grant",
        world.dataset,
        "org:University",
        "C",
        "research",
        "2001-01-01",
        "",
    )
    other_record = records_for(["patient2"], world.dataset, start=1)[0]["record_id"]
    world.refused(
        404,
        "has no record",
        p1,
        "consent:Grant",
        world.dataset,
        "org:University",
        "C",
        "research",
        "",
        other_record,
    )
    world.refused(
        403, "only the patient who granted it", p2, "consent:RevokeGrant", grant["grant_id"]
    )
    world.refused(
        404, "no active grant", p2, "consent:Revoke", world.dataset, "org:University", "C", ""
    )
    world.refused(
        403,
        "needs the role steward or executor",
        world.alice,
        "consent:WhoMayCompute",
        world.dataset,
        "alice@University",
        "x",
        10,
        "",
        submit=False,
    )
    world.refused(
        403,
        "may not see this grant",
        world.alice,
        "consent:GetGrant",
        grant["grant_id"],
        submit=False,
    )
    assert cohort(world) == ["patient1@Hospital"]


@pytest.mark.unit
def test_consent_expires_at_its_end(local):
    world, ledger = local
    world.setup(consent=False)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ledger.invoke(
        world.patients[0],
        "consent:Grant",
        world.dataset,
        "org:University",
        "C",
        "research",
        "2030-01-31",
        "",
        timestamp=start,
    )

    def cohort_at(moment):
        page = json.loads(
            ledger.invoke(
                world.executor,
                "consent:WhoMayCompute",
                world.dataset,
                "alice@University",
                "x",
                10,
                "",
                submit=False,
                timestamp=moment,
            )
        )
        return [p["patient"] for p in page["patients"]]

    assert cohort_at(start + dt.timedelta(days=30)) == ["patient1@Hospital"]
    assert cohort_at(start + dt.timedelta(days=31)) == []


# -- the catalogue ----------------------------------------------------------------------


def test_catalogue_publish_list_disable(world):
    world.setup(consent=False)
    world.submit(
        world.hospital_admin, "catalogue:Publish", json.dumps(method_spec(world.method, "1.1"))
    )
    latest = world.evaluate(world.alice, "catalogue:GetMethod", world.method, "")
    assert latest["version"] == "1.1"
    world.submit(world.hospital_admin, "catalogue:SetEnabled", world.method, "1.1", False)
    assert world.evaluate(world.alice, "catalogue:GetMethod", world.method, "")["version"] == "1.0"
    available = world.evaluate(world.alice, "catalogue:ListAvailableMethods")
    assert (world.method, "1.1") not in [(m["name"], m["version"]) for m in available]
    assert (world.method, "1.0") in [(m["name"], m["version"]) for m in available]


def test_catalogue_refusals(world):
    world.setup(consent=False)
    spec = method_spec(world.method)
    world.refused(403, "needs the role admin", world.alice, "catalogue:Publish", json.dumps(spec))
    world.refused(
        409, "already published", world.hospital_admin, "catalogue:Publish", json.dumps(spec)
    )
    bad = method_spec(world.method, "2.0", parameters={"type": "object", "pattern": "x"})
    world.refused(
        400,
        "method.parameters must be made of",
        world.hospital_admin,
        "catalogue:Publish",
        json.dumps(bad),
    )
    world.refused(
        400,
        "code_hash must be a SHA-256",
        world.hospital_admin,
        "catalogue:Publish",
        json.dumps(method_spec(world.method, "2.0", code_hash="nope")),
    )
    world.refused(
        403,
        "for Hospital's admin",
        world.university_admin,
        "catalogue:SetEnabled",
        world.method,
        "1.0",
        False,
    )


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
    done = world.submit(world.executor, "Complete", token["token_id"], world.result())
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
    world.submit(
        world.executor, "consent:RecordUsage", token["token_id"], json.dumps(["patient1@Hospital"])
    )
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
    second = world.request(params={"column": "age", "epsilon": 0.5})
    world.refused(
        409, "too little privacy budget", world.hospital_admin, "Approve", second["token_id"]
    )
    third = world.running(params={"column": "age", "epsilon": 0.3})
    world.submit(world.hospital_admin, "budget:Grant", world.dataset, researcher, 0.0001)
    world.refused(
        400,
        "must not exceed",
        world.executor,
        "Complete",
        third["token_id"],
        world.result(epsilon=0.5),
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
