"""FlowBlock's chaincode rules, each proven twice: in-process and on a devnet.

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
from flowblock.testing.flowblock_ledger import VITALS_SCHEMA, Refusal, method_spec, records_for
from flowblock.vocabulary import ACCESS_FIELD, CONSENT_FIELD, RECORDS_FIELD, Failure, FailureKind

# -- records ----------------------------------------------------------------------------


def test_records_register_once_update_with_history_and_tombstone(world):
    world.setup(consent=False)
    names = [p.patient for p in world.patients]
    again = world.register_records(records_for(names, world.dataset))
    assert again == {"registered": 0, "updated": 0, "unchanged": 3, "deleted": 0}
    changed = records_for(names[:1], world.dataset)
    changed[0]["sha256"] = "f" * 64
    assert world.register_records(changed)["updated"] == 1
    record_id = changed[0]["record_id"]
    record = world.evaluate(world.patients[0], "records:GetRecord", world.dataset, record_id)
    assert (record["version"], record["sha256"]) == (2, "f" * 64)
    deleted = world.delete_record(record_id, "error")
    assert deleted["deleted"] is True
    history = world.evaluate(world.steward, "records:RecordHistory", world.dataset, record_id)
    assert [h["record"]["version"] for h in history] == [1, 2, 3]  # oldest first
    mine = world.evaluate(world.patients[0], "records:MyRecords", 100, "")
    assert record_id in [r["record_id"] for r in mine["records"]]
    # The data side is told which records to leave out; nobody else is.
    gone = world.evaluate(world.executor, "records:DeletedRecords", world.dataset, 100, "")
    assert gone["record_ids"] == [record_id]
    world.refused(403, "needs the role", world.bob, "records:DeletedRecords", world.dataset, 100,
                  "", submit=False)  # fmt: skip
    # An import run again does not bring a deleted record back, nor give its id to another.
    assert world.register_records(changed)["deleted"] == 1
    assert world.evaluate(world.steward, "records:GetRecord", world.dataset, record_id)["deleted"]
    moved = records_for(names[1:2], world.dataset)
    moved[0]["record_id"] = record_id
    with pytest.raises(Refusal, match="to another patient") as caught:
        world.register_records(moved)
    assert caught.value.status == 409


def test_records_refusals(world):
    world.setup(consent=False)
    good = records_for(["patient9"], world.dataset, start=100)
    world.refused(
        403, "needs the role steward", world.alice, "records:RegisterDataset", "x1", "tabular", "{}"
    )
    world.refused(
        409, "already exists", world.steward, "records:RegisterDataset", world.dataset,
        "tabular", json.dumps(VITALS_SCHEMA),
    )  # fmt: skip

    def refused(status, match, records, who=None):
        raw = records if isinstance(records, str) else json.dumps(records)
        world.refused(
            status, match, who or world.steward, "records:RegisterRecords", world.dataset,
            transient={RECORDS_FIELD: raw}, endorsing_organisations=["HospitalMSP"],
        )  # fmt: skip

    mallory = world.hospital_ca.issue("mallory", "patient")
    refused(403, f"needs the role steward; {mallory.name}@Hospital is a patient", good, mallory)
    other_steward = CertificateAuthority.load(world.people.data_dir, "University").issue(
        "ustew", "steward"
    )
    refused(403, "not ustew@University", good, other_steward)
    refused(400, "records must be valid JSON", "[{oops")
    refused(400, "records[0].sha256 must be a SHA-256 digest", [{**good[0], "sha256": "xyz"}])
    refused(400, "appears twice", good + good)
    refused(400, "larger than 512 KiB", [good[0]] * 6000)
    refused(409, "another patient",
            [{**records_for(["patient1"], world.dataset)[0], "patient": "patient2"}])  # fmt: skip
    world.refused(400, "given in the transient field 'records'", world.steward,
                  "records:RegisterRecords", world.dataset)  # fmt: skip
    record_id = records_for(["patient1"], world.dataset)[0]["record_id"]
    for other in (world.alice, world.patients[1]):
        world.refused(403, "may not see the records", other, "records:GetRecord", world.dataset,
                      record_id, submit=False)  # fmt: skip
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

    revoked = world.revoke(p1, "org:University", "C")
    assert [g["rights"] for g in revoked] == ["R"]
    assert cohort(world) == ["patient2@Hospital"]
    mine = world.evaluate(p1, "consent:MyGrants", 100, "")
    # The devnet is shared by the session: patient1 has grants on other tests' datasets.
    ours = [g for g in mine["grants"] if g["dataset"] == world.dataset]
    assert [(g["rights"], g["status"]) for g in ours] == [("R", "ACTIVE")]
    world.private(p1, "consent:RevokeGrant", grant["grant_id"])
    history = world.evaluate(p1, "consent:GrantHistory", grant["grant_id"])
    assert [h["grant"]["status"] for h in history] == [
        "ACTIVE",
        "ACTIVE",
        "REVOKED",
    ]  # oldest first
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

    def refused_grant(status, match, who, **fields):
        spec = {"dataset": world.dataset, "to": "org:University", "rights": "C",
                "purpose": "research", "until": "", "record_id": "", **fields}  # fmt: skip
        world.refused(
            status, match, who, "consent:Grant",
            transient={CONSENT_FIELD: json.dumps(spec)}, endorsing_organisations=["HospitalMSP"],
        )  # fmt: skip

    refused_grant(403, "needs the role patient", world.alice)
    refused_grant(400, "rights must be some of R", p1, rights="X")
    refused_grant(400, "grantee must be", p1, to="University")
    refused_grant(400, "until must be in the future", p1, until="2001-01-01")
    other_record = records_for(["patient2"], world.dataset, start=1)[0]["record_id"]
    refused_grant(404, "has no record", p1, record_id=other_record)
    world.refused(400, "never as arguments", p1, "consent:Grant")
    world.refused(
        400, "must give dataset, to, rights, purpose, until, record_id", p1, "consent:Grant",
        transient={CONSENT_FIELD: json.dumps({"dataset": world.dataset})},
    )  # fmt: skip
    world.refused(
        403, "only the patient who granted it", p2, "consent:RevokeGrant", grant["grant_id"]
    )
    with pytest.raises(Refusal, match="no active grant"):
        world.revoke(p2, "org:University", "C")
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
    # Another organisation holds no grant of the Hospital's patients: not even its id.
    world.refused(404, "there is no grant", world.alice, "consent:GetGrant", grant["grant_id"],
                  submit=False)  # fmt: skip
    assert cohort(world) == ["patient1@Hospital"]


@pytest.mark.unit
def test_consent_expires_at_its_end(local):
    world, ledger = local
    world.setup(consent=False)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    spec = {"dataset": world.dataset, "to": "org:University", "rights": "C",
            "purpose": "research", "until": "2030-01-31", "record_id": ""}  # fmt: skip
    ledger.invoke(
        world.patients[0], "consent:Grant", timestamp=start,
        transient={CONSENT_FIELD: json.dumps(spec).encode()},
    )  # fmt: skip

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
    # Without a version, the newest enabled one is disabled, and no phantom is left.
    token = world.request()  # of 1.0, before it is disabled
    world.submit(world.hospital_admin, "catalogue:SetEnabled", world.method, "", False)
    versions = [m["version"] for m in world.evaluate(world.alice, "catalogue:ListMethods")
                if m["name"] == world.method]  # fmt: skip
    assert versions == ["1.0", "1.1"]
    assert world.evaluate(world.alice, "catalogue:ListAvailableMethods") == [
        m for m in available if m["name"] != world.method
    ]
    # A token asked for before its method was disabled is not approved after.
    world.refused(409, "has been disabled", world.hospital_admin, "Approve", token["token_id"])


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


# -- writes under write consent ---------------------------------------------------------


def test_writes_need_write_consent_and_register_only_the_patients_records(world):
    world.setup(consent=False)
    patient, other = world.patients[0], world.patients[1]
    sealed = "c2VhbGVkIHJvd3M="
    world.refused(403, "needs the role executor", world.bob, "access:PublishExecutorCertificate")
    world.submit(world.executor, "access:PublishExecutorCertificate")
    published = world.evaluate(world.bob, "access:GetExecutorCertificate", "Hospital")
    assert published["executor"] == "executor@Hospital"
    assert "BEGIN CERTIFICATE" in published["certificate"]
    write = {"dataset": world.dataset, "patient": patient.patient, "purpose": "care",
             "sealed": sealed}  # fmt: skip
    with pytest.raises(Refusal, match="no write consent"):
        world.access(world.bob, "access:RequestWrite", write)
    world.grant(patient, "user:bob@University", "R", "care")  # reading is not writing
    with pytest.raises(Refusal, match="no write consent"):
        world.access(world.bob, "access:RequestWrite", write)
    world.grant(patient, "user:bob@University", "W", "care")
    access = world.access(world.bob, "access:RequestWrite", write)
    # The answer goes into the block: the request's id and state, nothing of whose it is.
    assert access == {"access_id": access["access_id"], "data_org": "Hospital",
                      "kind": "write", "status": "APPROVED"}  # fmt: skip
    access_id = access["access_id"]
    world.refused(403, "needs the role executor", world.bob, "access:ClaimWrite", access_id,
                  endorsing_organisations=["HospitalMSP"])  # fmt: skip
    world.private(world.executor, "access:ClaimWrite", access_id)

    def stored(records: list[dict]) -> dict:
        for record in records:
            record["object_key"] = "writes/part.parquet"
        spec = {"object_key": "writes/part.parquet", "sha256": "a" * 64, "records": records}
        return {"transient": {ACCESS_FIELD: json.dumps(spec)}}

    theirs = records_for([other.name], world.dataset, start=60)
    with pytest.raises(Refusal, match="is not a record of"):
        world.private(world.executor, "access:CompleteWrite", access_id, **stored(theirs))
    moved = records_for([patient.patient], world.dataset, start=1)  # the other patient's record
    with pytest.raises(Refusal, match="to another patient"):
        world.private(world.executor, "access:CompleteWrite", access_id, **stored(moved))
    mine = records_for([patient.patient], world.dataset, start=50)
    world.private(world.executor, "access:CompleteWrite", access_id, **stored(mine))
    done = world.evaluate(world.bob, "access:GetAccess", "Hospital", access_id,
                          target_organisations=["HospitalMSP"])  # fmt: skip
    assert (done["status"], done["result"]["registered"]) == ("DONE", 1)
    assert done["result"]["part"] == {"object_key": "writes/part.parquet", "sha256": "a" * 64,
                                      "rows": 1}  # fmt: skip
    record = world.evaluate(patient, "records:GetRecord", world.dataset, mine[0]["record_id"])
    assert record["registered_by"] == "bob@University"
    log = world.evaluate(patient, "access:MyAccessLog", 10, "")
    assert [e["kind"] for e in log["reads"] if e["dataset"] == world.dataset] == ["write"]
    with pytest.raises(Refusal, match="is DONE"):
        world.private(world.executor, "access:FailWrite", access_id, "late")


def test_reads_are_served_as_consent_stands_when_claimed_and_when_released(world):
    world.setup(consent=False)
    patient = world.patients[0]
    (first,) = records_for([patient.patient], world.dataset)
    wide = world.grant(patient, "user:bob@University", "R", "care")
    read = {"dataset": world.dataset, "patient": patient.patient, "purpose": "care"}
    access = world.access(world.bob, "access:RequestRead", read)

    def current() -> dict:
        return world.evaluate(world.executor, "access:GetAccess", "Hospital", access["access_id"])

    assert current()["record_id"] == ""
    # The patient narrows the consent to one record before the executor takes the request:
    # the request is served for that record only.
    world.private(patient, "consent:RevokeGrant", wide["grant_id"])
    narrow = world.grant(patient, "user:bob@University", "R", "care", record_id=first["record_id"])
    world.private(world.executor, "access:ClaimRead", access["access_id"])
    claimed = current()
    assert (claimed["record_id"], claimed["grant_id"]) == (first["record_id"], narrow["grant_id"])
    # Then withdraws it while the rows are sealed: nothing is released.
    world.private(patient, "consent:RevokeGrant", narrow["grant_id"])
    sealed = json.dumps({"encrypted": "c2VhbGVk", "result_hash": "1" * 64, "records": 1})
    with pytest.raises(Refusal, match="revoked or narrowed while it was served"):
        world.private(world.executor, "access:CompleteRead", access["access_id"],
                      transient={ACCESS_FIELD: sealed})  # fmt: skip
    asked = world.evaluate(world.bob, "access:GetAccess", "Hospital", access["access_id"],
                           target_organisations=["HospitalMSP"])  # fmt: skip
    assert asked["result"] is None
    # Until it ends, the request is open for its organisation's data side, and only theirs.
    opened = world.evaluate(world.executor, "access:ListOpen", 100, "")["requests"]
    assert [(r["access_id"], r["status"]) for r in opened] == [(access["access_id"], "RUNNING")]
    world.refused(403, "needs the role", world.bob, "access:ListOpen", 100, "", submit=False)
    withdrawn = Failure(FailureKind.CONSENT_REVOKED, "consent withdrawn", status=403)
    world.private(world.executor, "access:FailRead", access["access_id"], withdrawn.to_json())
    failed = current()
    assert (failed["status"], failed["failure"]["kind"]) == ("FAILED", "consent_revoked")
    assert world.evaluate(world.executor, "access:ListOpen", 100, "")["requests"] == []


def test_every_change_to_a_request_or_a_consent_is_one_event(local):
    world, ledger = local
    world.setup(consent=False)
    patient = world.patients[0]
    for purpose in ("care", "audit"):
        world.grant(patient, "user:bob@University", "R", purpose)
    read = {"dataset": world.dataset, "patient": patient.patient, "purpose": "care"}
    access = world.access(world.bob, "access:RequestRead", read)
    world.submit(world.executor, "access:PublishExecutorCertificate")
    world.private(world.executor, "access:ClaimRead", access["access_id"])
    revoked = world.revoke(patient, "user:bob@University", "R")
    names = [event.event_name for event in ledger.events[-4:]]
    assert names == ["ReadRequested", "ExecutorCertificatePublished", "ReadClaimed",
                     "ConsentRevoked"]  # fmt: skip
    # A transaction has one event: revoking two grants names both in it.
    payload = json.loads(ledger.events[-1].payload)
    assert sorted(payload["grants"]) == sorted(g["grant_id"] for g in revoked)
    assert len(payload["grants"]) == 2


def test_a_registered_part_is_never_registered_again_with_other_contents(world):
    """An object's key and hash are bound once: other bytes under the same key would mean
    the stored object was replaced (finding 3, at the ledger)."""
    world.setup(consent=False)
    part = (world.steward, "records:RegisterPartition", world.dataset, "p/part.parquet")
    assert world.submit(*part, "a" * 64, 3)["changed"] is True
    assert world.submit(*part, "a" * 64, 3)["changed"] is False
    world.refused(409, "registered with other contents", *part, "b" * 64, 3)
    world.refused(409, "registered with other contents", *part, "a" * 64, 4)
