"""Reading and writing a patient's records: only with their consent, always on the record.

FlowBlock's read consent means what it meant in FlowBlock: a person or organisation a
patient granted R (their doctor, say) may fetch that patient's raw records. The
request names the patient and purpose and is refused unless an active grant covers it
at that moment; the data organisation's executor claims it (the grant is checked
again), seals the rows to the reader and completes it. Each read is a ledger entry
the patient can see. A compute-only grant never yields a row: only R does.

Write consent (W) lets a person or organisation add or correct a patient's records.
The rows travel sealed to the data organisation's executor (whose certificate it
publishes here), never in the clear on a ledger every organisation keeps; the
executor stores them, and completing the write registers their hashes, each record
checked to be the patient's, with the ledger keeping every earlier version.

A request the executor cannot serve ends FAILED with a typed failure, as a token does
(flowblock.vocabulary.Failure): a consent revoked before it was served, say.
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
    failure_argument,
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
from flowblock.chaincode.contracts.records import (
    DATA_SIDE,
    get_dataset,
    parse_records,
    register_partition,
    register_records,
)
from flowblock.vocabulary import MAX_SEALED_BYTES, MAX_WRITE_RECORDS, Event

ACCESS, PATIENT_ACCESS = "access", "patient~access"
#: Requests their data organisation has still to serve, so that none is forgotten.
OPEN_ACCESS = "open~access"
CLAIMED = {"read": Event.READ_CLAIMED, "write": Event.WRITE_CLAIMED}
EXECUTOR_CERTIFICATE = "executor-certificate"


def _get(ctx: Context, access_id: str, kind: str | None = None) -> dict:
    """A read or write request (only of ``kind``, when given)."""
    found = read(ctx, key(ACCESS, access_id))
    if found is None or kind not in (None, found["kind"]):
        raise NotFound(f"there is no {kind or 'access'} request {access_id[:80]!r}")
    return found


def _patient(patient: str, meta: dict) -> str:
    return name(patient if "@" in patient else f"{patient}@{meta['organisation']}", "patient")


class AccessContract(FlowBlockContract):
    name = "access"

    @transaction
    def RequestRead(self, ctx: Context, dataset: str, patient: str, purpose: str) -> dict:  # noqa: N802
        """Ask for a patient's records; refused unless their read consent covers the caller."""
        access = _request(ctx, "read", get_dataset(ctx, dataset), patient, purpose)
        access["reader_certificate"] = ctx.client_identity.certificate_pem
        _record(ctx, access, Event.READ_REQUESTED)
        return access

    @transaction
    def ClaimRead(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """The data organisation's executor takes a read request, once, if consent still holds."""
        return _claim(ctx, access_id, "read")

    @transaction
    def CompleteRead(self, ctx: Context, access_id: str, result: str) -> dict:  # noqa: N802
        access, _ = _running(ctx, access_id, "read")
        spec = json_argument(result, "result", limit=MAX_SEALED_BYTES + 4096)
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
        _settle(ctx, access)
        emit(ctx, Event.READ_COMPLETED, _event(access))
        return access

    @transaction
    def FailRead(self, ctx: Context, access_id: str, failure: str) -> dict:  # noqa: N802
        """The executor fails a read it cannot serve; ``failure`` as Fail's of a token."""
        return _fail(ctx, access_id, "read", failure)

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
    def ListOpen(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """A page of the reads and writes the caller's organisation has still to serve."""
        who = require(ctx, *DATA_SIDE)
        fields = ("access_id", "kind", "status", "claimed_by")
        requests, following = _listed(ctx, OPEN_ACCESS, who.organisation, size, bookmark, fields)
        return {"requests": requests, "bookmark": following}

    @transaction(submit=False)
    def MyAccessLog(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """Every read of, and write to, the calling patient's records: who, when, why."""
        patient = require(ctx, "patient")
        fields = ("kind", "access_id", "reader", "dataset", "purpose", "status", "requested_at")
        reads, following = _listed(ctx, PATIENT_ACCESS, patient.key, size, bookmark, fields)
        return {"reads": reads, "bookmark": following}

    # -- writes -------------------------------------------------------------------------

    @transaction
    def PublishExecutorCertificate(self, ctx: Context) -> dict:  # noqa: N802
        """An executor publishes its certificate: writers seal rows to its key."""
        executor = require(ctx, "executor")
        entry = {"organisation": executor.organisation, "executor": executor.key,
                 "certificate": ctx.client_identity.certificate_pem}  # fmt: skip
        if read(ctx, key(EXECUTOR_CERTIFICATE, executor.organisation)) != entry:
            write(ctx, key(EXECUTOR_CERTIFICATE, executor.organisation), entry)
            emit(ctx, Event.EXECUTOR_CERTIFICATE_PUBLISHED,
                 {"organisation": executor.organisation, "executor": executor.key})  # fmt: skip
        return entry

    @transaction(submit=False)
    def GetExecutorCertificate(self, ctx: Context, organisation: str) -> dict:  # noqa: N802
        found = read(ctx, key(EXECUTOR_CERTIFICATE, name(organisation, "organisation")))
        if found is None:
            raise NotFound(f"{organisation} has published no executor certificate yet")
        return found

    @transaction
    def RequestWrite(  # noqa: N802
        self, ctx: Context, dataset: str, patient: str, purpose: str, sealed: str
    ) -> dict:
        """Add or correct a patient's records, sealed to the executor; needs write consent."""
        meta = get_dataset(ctx, dataset)
        if meta["kind"] != "tabular":
            raise Invalid(f"records are written to tabular datasets; {dataset!r} is not one")
        if not isinstance(sealed, str) or not sealed or len(sealed) > MAX_SEALED_BYTES:
            raise Invalid(f"sealed must be the sealed rows, at most {MAX_SEALED_BYTES // 1024} KiB")
        access = _request(ctx, "write", meta, patient, purpose)
        access["sealed"] = sealed
        _record(ctx, access, Event.WRITE_REQUESTED)
        return {k: v for k, v in access.items() if k != "sealed"}

    @transaction
    def ClaimWrite(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """The data organisation's executor takes a write, once, if consent still holds."""
        return _claim(ctx, access_id, "write")

    @transaction
    def CompleteWrite(self, ctx: Context, access_id: str, stored: str) -> dict:  # noqa: N802
        """Register the stored rows of a write: its part and every record, the patient's."""
        access, executor = _running(ctx, access_id, "write")
        spec = json_argument(stored, "stored")
        batch = spec.get("records")
        if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_WRITE_RECORDS:
            raise Invalid(f"stored.records must list 1 to {MAX_WRITE_RECORDS} records")
        entries = parse_records(batch, access["data_org"])
        for index, entry in enumerate(entries):
            if entry["patient"] != access["patient"]:
                raise Refused(f"stored.records[{index}] is not a record of {access['patient']}")
            if access["record_id"] and entry["record_id"] != access["record_id"]:
                raise Refused(f"the write consent covers only record {access['record_id']!r}")
            if entry["object_key"] != spec.get("object_key"):
                raise Invalid(f"stored.records[{index}] must be in stored.object_key")
        register_partition(
            ctx, access["dataset"], str(spec.get("object_key", "")), spec.get("sha256", ""),
            len(entries), executor.key,
        )  # fmt: skip
        counts = register_records(ctx, access["dataset"], entries, access["reader"])
        access.update(
            status="DONE",
            completed_at=timestamp(now(ctx)),
            result={**counts, "record_ids": [entry["record_id"] for entry in entries]},
        )
        _settle(ctx, access)
        emit(ctx, Event.WRITE_COMPLETED, _event(access))
        return access

    @transaction
    def FailWrite(self, ctx: Context, access_id: str, failure: str) -> dict:  # noqa: N802
        """The executor fails a write it cannot serve; ``failure`` as Fail's of a token."""
        return _fail(ctx, access_id, "write", failure)


def _listed(
    ctx: Context, index: str, owner: str, size: int, bookmark: str, fields: tuple[str, ...]
) -> tuple[list[dict], str]:
    """A page of the requests an index lists under ``owner``, each as ``fields``."""
    page, following = paged(ctx, index, [owner], size, bookmark)
    requests = [_get(ctx, split_composite_key(kv.key)[1][1]) for kv in page]
    return [{k: access[k] for k in fields} for access in requests], following


def _event(access: dict) -> dict:
    return {k: access[k] for k in ("access_id", "data_org", "dataset", "reader", "status")}


#: The consent right each kind of request needs, and the event of its failure.
RIGHT = {"read": "R", "write": "W"}
FAILED = {"read": Event.READ_FAILED, "write": Event.WRITE_FAILED}


def _claim(ctx: Context, access_id: str, kind: str) -> dict:
    """The executor takes a request once, if the consent behind it still holds."""
    access = _get(ctx, access_id, kind)
    executor = require(ctx, "executor", organisation=access["data_org"])
    if access["status"] != "APPROVED":
        raise Conflict(f"{kind} request {access_id} is {access['status']}, not APPROVED")
    grant = _current_grant(ctx, access)
    if grant is None:
        raise Refused(f"the {kind} consent behind {access_id} has been revoked")
    # Served as consent stands now: a patient who narrowed it to one record since the
    # request is served that record only.
    access.update(
        status="RUNNING",
        claimed_by=executor.key,
        grant_id=grant["grant_id"],
        record_id=grant["record_id"],
    )
    write(ctx, key(ACCESS, access_id), access)
    emit(ctx, CLAIMED[kind], _event(access))
    return access


def _running(ctx: Context, access_id: str, kind: str):
    """A request the calling executor claimed and may still complete, and that executor:
    the consent it was claimed under must still cover all it was claimed for."""
    access = _get(ctx, access_id, kind)
    executor = require(ctx, "executor", organisation=access["data_org"])
    if access["status"] != "RUNNING" or access["claimed_by"] != executor.key:
        raise Conflict(f"{kind} request {access_id} is not running under {executor.key}")
    grant = _current_grant(ctx, access)
    if grant is None or grant["record_id"] not in ("", access["record_id"]):
        raise Refused(
            f"the {kind} consent behind {access_id} was revoked or narrowed while it was served"
        )
    return access, executor


def _current_grant(ctx: Context, access: dict) -> dict | None:
    return find_grant(ctx, access["dataset"], access["patient"], access["reader"],
                      RIGHT[access["kind"]], access["purpose"])  # fmt: skip


def _fail(ctx: Context, access_id: str, kind: str, failure: str) -> dict:
    access = _get(ctx, access_id, kind)
    require(ctx, "executor", organisation=access["data_org"])
    if access["status"] not in ("APPROVED", "RUNNING"):
        raise Conflict(f"{kind} request {access_id} is {access['status']}")
    failed = failure_argument(failure)
    access.update(status="FAILED", failure=failed, reason=failed["message"])
    _settle(ctx, access)
    emit(ctx, FAILED[kind], _event(access))
    return access


def _settle(ctx: Context, access: dict) -> None:
    """Store a request that has ended (DONE or FAILED): it is no longer open."""
    write(ctx, key(ACCESS, access["access_id"]), access)
    ctx.stub.del_state(key(OPEN_ACCESS, access["data_org"], access["access_id"]))


def _request(ctx: Context, kind: str, meta: dict, patient: str, purpose: str) -> dict:
    """A new read or write request of the caller's on the dataset ``meta`` describes, if
    the patient's consent covers it."""
    who = caller(ctx)
    dataset = meta["name"]
    patient = _patient(patient, meta)
    grant = find_grant(ctx, dataset, patient, who.key, RIGHT[kind], text(purpose, "purpose", 200))
    if grant is None:
        raise Refused(
            f"no {kind} consent of {patient} on {dataset!r} covers {who.key} for {purpose!r}"
        )
    return {
        "access_id": ctx.stub.tx_id,
        "kind": kind,
        "reader": who.key,  # who acts on the records, reading or writing
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
        "failure": None,
    }


def _record(ctx: Context, access: dict, event: Event) -> None:
    """Store a new request where its patient's access log finds it, and announce it."""
    write(ctx, key(ACCESS, access["access_id"]), access)
    ctx.stub.put_state(key(PATIENT_ACCESS, access["patient"], access["access_id"]), b"\x00")
    ctx.stub.put_state(key(OPEN_ACCESS, access["data_org"], access["access_id"]), b"\x00")
    emit(ctx, event, _event(access))
