"""Reading a patient's records: only with their read consent, and always on the record.

FlowBlock's read consent means what it meant in FlowBlock: a person or organisation a
patient granted R (their doctor, say) may fetch that patient's raw records. The
request names the patient and purpose and is refused unless an active grant covers it
at that moment; the data organisation's executor claims it (the grant is checked
again), seals the rows to the reader and completes it. Each read is a ledger entry
the patient can see. A compute-only grant never yields a row: only R does.
"""

from __future__ import annotations

from flowblock.chaincode import Context, split_composite_key, transaction
from flowblock.chaincode.contracts.base import (
    Conflict,
    FlowBlockContract,
    Invalid,
    NotFound,
    Refused,
    caller,
    emit,
    json_argument,
    key,
    name,
    now,
    paged,
    read,
    require,
    sha256_hex,
    text,
    timestamp,
    write,
)
from flowblock.chaincode.contracts.consent import find_grant
from flowblock.chaincode.contracts.records import DATA_SIDE, get_dataset

ACCESS, PATIENT_ACCESS = "access", "patient~access"
READ_REQUESTED, READ_COMPLETED, READ_FAILED = "ReadRequested", "ReadCompleted", "ReadFailed"
MAX_SEALED_BYTES = 256 * 1024


def _get(ctx: Context, access_id: str) -> dict:
    found = read(ctx, key(ACCESS, access_id))
    if found is None:
        raise NotFound(f"there is no read request {access_id[:80]!r}")
    return found


class AccessContract(FlowBlockContract):
    name = "access"

    @transaction
    def RequestRead(self, ctx: Context, dataset: str, patient: str, purpose: str) -> dict:  # noqa: N802
        """Ask for a patient's records; refused unless their read consent covers the caller."""
        reader = caller(ctx)
        meta = get_dataset(ctx, dataset)
        patient = name(
            patient if "@" in patient else f"{patient}@{meta['organisation']}", "patient"
        )
        grant = find_grant(ctx, dataset, patient, reader.key, "R", text(purpose, "purpose", 200))
        if grant is None:
            raise Refused(
                f"no read consent of {patient} on {dataset!r} covers {reader.key} for {purpose!r}"
            )
        access = {
            "access_id": ctx.stub.tx_id,
            "kind": "read",
            "reader": reader.key,
            "reader_certificate": ctx.client_identity.certificate_pem,
            "dataset": dataset,
            "data_org": meta["organisation"],
            "patient": patient,
            "purpose": purpose,
            "grant_id": grant["grant_id"],
            "record_id": grant["record_id"],
            "status": "APPROVED",
            "requested_at": timestamp(now(ctx)),
            "claimed_by": "",
            "result": None,
            "reason": "",
        }
        write(ctx, key(ACCESS, access["access_id"]), access)
        ctx.stub.put_state(key(PATIENT_ACCESS, patient, access["access_id"]), b"\x00")
        emit(ctx, READ_REQUESTED, _event(access))
        return access

    @transaction
    def ClaimRead(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """The data organisation's executor takes a read request, once, if consent still holds."""
        access = _get(ctx, access_id)
        executor = require(ctx, "executor", organisation=access["data_org"])
        if access["status"] != "APPROVED":
            raise Conflict(f"read request {access_id} is {access['status']}, not APPROVED")
        if find_grant(ctx, access["dataset"], access["patient"], access["reader"], "R",
                      access["purpose"]) is None:  # fmt: skip
            raise Refused(f"the read consent behind {access_id} has been revoked")
        access.update(status="RUNNING", claimed_by=executor.key)
        write(ctx, key(ACCESS, access_id), access)
        return access

    @transaction
    def CompleteRead(self, ctx: Context, access_id: str, result: str) -> dict:  # noqa: N802
        access = _get(ctx, access_id)
        executor = require(ctx, "executor", organisation=access["data_org"])
        if access["status"] != "RUNNING" or access["claimed_by"] != executor.key:
            raise Conflict(f"read request {access_id} is not running under {executor.key}")
        spec = json_argument(result, "result")
        encrypted = spec.get("encrypted", "")
        if not isinstance(encrypted, str) or not encrypted or len(encrypted) > MAX_SEALED_BYTES:
            raise Invalid(
                f"result.encrypted must be the sealed rows, at most {MAX_SEALED_BYTES // 1024} KiB"
            )
        records = spec.get("records")
        if not isinstance(records, int) or isinstance(records, bool) or records < 0:
            raise Invalid("result.records must be a whole number at least 0")
        access.update(
            status="DONE",
            completed_at=timestamp(now(ctx)),
            result={"encrypted": encrypted, "records": records,
                    "result_hash": sha256_hex(spec.get("result_hash", ""), "result.result_hash")},
        )  # fmt: skip
        write(ctx, key(ACCESS, access_id), access)
        emit(ctx, READ_COMPLETED, _event(access))
        return access

    @transaction
    def FailRead(self, ctx: Context, access_id: str, reason: str) -> dict:  # noqa: N802
        access = _get(ctx, access_id)
        require(ctx, "executor", organisation=access["data_org"])
        if access["status"] not in ("APPROVED", "RUNNING"):
            raise Conflict(f"read request {access_id} is {access['status']}")
        access.update(status="FAILED", reason=text(reason, "reason"))
        write(ctx, key(ACCESS, access_id), access)
        emit(ctx, READ_FAILED, _event(access))
        return access

    @transaction(submit=False)
    def GetAccess(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        access = _get(ctx, access_id)
        who = caller(ctx)
        if who.key in (access["reader"], access["patient"]):
            return access
        if who.role in DATA_SIDE and who.organisation == access["data_org"]:
            return access
        raise Refused(f"{who.key} may not see read request {access_id}")

    @transaction(submit=False)
    def MyAccessLog(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """Every read of the calling patient's records: who, when, why."""
        patient = require(ctx, "patient")
        page, following = paged(ctx, PATIENT_ACCESS, [patient.key], size, bookmark)
        reads = []
        for kv in page:
            access = _get(ctx, split_composite_key(kv.key)[1][1])
            reads.append({k: access[k] for k in ("access_id", "reader", "dataset", "purpose",
                                                  "status", "requested_at")})  # fmt: skip
        return {"reads": reads, "bookmark": following}


def _event(access: dict) -> dict:
    return {k: access[k] for k in ("access_id", "data_org", "dataset", "reader", "status")}
