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

A request names a patient, so it lives in the data organisation's private collection
(:mod:`.private`): its fields travel in the transient field ``access``, the data
organisation's peer alone endorses and answers, and the shared blocks and events carry
only the request's id, its organisation and its state.
"""

from __future__ import annotations

from flowblock.chaincode import Context, transaction
from flowblock.chaincode.contracts.base import (
    Conflict,
    FlowBlockContract,
    Invalid,
    NotFound,
    Refused,
    caller,
    emit,
    failure_argument,
    key,
    name,
    now,
    read,
    require,
    sha256_hex,
    text,
    timestamp,
    transient_argument,
    transient_json,
    write,
)
from flowblock.chaincode.contracts.consent import find_grant
from flowblock.chaincode.contracts.private import SEPARATOR, PrivateState
from flowblock.chaincode.contracts.records import (
    DATA_SIDE,
    get_dataset,
    parse_records,
    register_records,
)
from flowblock.vocabulary import ACCESS_FIELD, MAX_SEALED_BYTES, MAX_WRITE_RECORDS, Event

ACCESS, PATIENT_ACCESS = "access", "patient-access"
#: Requests their data organisation has still to serve, so that none is forgotten.
OPEN_ACCESS = "open-access"
CLAIMED = {"read": Event.READ_CLAIMED, "write": Event.WRITE_CLAIMED}
EXECUTOR_CERTIFICATE = "executor-certificate"


def _get(ctx: Context, organisation: str, access_id: str, kind: str | None = None) -> dict:
    """A read or write request held by ``organisation`` (only of ``kind``, when given)."""
    state = PrivateState(ctx, name(organisation, "organisation"))
    found = state.read(state.key(ACCESS, name(access_id, "access_id")))
    if found is None or kind not in (None, found["kind"]):
        raise NotFound(f"there is no {kind or 'access'} request {access_id[:80]!r}")
    return found


def _patient(patient: str, meta: dict) -> str:
    return name(patient if "@" in patient else f"{patient}@{meta['organisation']}", "patient")


class AccessContract(FlowBlockContract):
    name = "access"

    @transaction
    def RequestRead(self, ctx: Context) -> dict:  # noqa: N802
        """Ask for a patient's records (the transient field ``access`` gives dataset,
        patient, purpose); refused unless their read consent covers the caller."""
        spec = transient_argument(ctx, ACCESS_FIELD, ("dataset", "patient", "purpose"))
        access = _request(ctx, "read", spec)
        access["reader_certificate"] = ctx.client_identity.certificate_pem
        _record(ctx, access, Event.READ_REQUESTED)
        return _event(access)

    @transaction
    def ClaimRead(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """The data organisation's executor takes a read request, once, if consent still holds."""
        return _claim(ctx, access_id, "read")

    @transaction
    def CompleteRead(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """The executor completes a read with the sealed rows, in the transient field
        ``access`` (the rows' count and hash say what a patient has)."""
        access, _ = _running(ctx, access_id, "read")
        spec = transient_json(
            ctx, ACCESS_FIELD, "the transient field 'access'", limit=MAX_SEALED_BYTES + 4096
        )
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
        return _event(access)

    @transaction
    def FailRead(self, ctx: Context, access_id: str, failure: str) -> dict:  # noqa: N802
        """The executor fails a read it cannot serve; ``failure`` as Fail's of a token."""
        return _fail(ctx, access_id, "read", failure)

    @transaction(submit=False)
    def GetAccess(self, ctx: Context, organisation: str, access_id: str) -> dict:  # noqa: N802
        """A request, for its reader, its patient and its data organisation; asked of
        ``organisation``'s peer, which alone holds it."""
        access = _get(ctx, organisation, access_id)
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
        state = PrivateState(ctx, who.organisation)
        requests, following = _listed(state, state.key(OPEN_ACCESS), size, bookmark, fields)
        return {"requests": requests, "bookmark": following}

    @transaction(submit=False)
    def MyAccessLog(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """Every read of, and write to, the calling patient's records: who, when, why."""
        patient = require(ctx, "patient")
        fields = ("kind", "access_id", "reader", "dataset", "purpose", "status", "requested_at")
        state = PrivateState(ctx, patient.organisation)
        index = state.key(PATIENT_ACCESS, state.hide(patient.key))
        reads, following = _listed(state, index, size, bookmark, fields)
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
    def RequestWrite(self, ctx: Context) -> dict:  # noqa: N802
        """Add or correct a patient's records, sealed to the executor; needs write consent.
        The transient field ``access`` gives dataset, patient, purpose and the sealed rows."""
        spec = transient_argument(ctx, ACCESS_FIELD, ("dataset", "patient", "purpose", "sealed"))
        sealed = spec["sealed"]
        if get_dataset(ctx, spec["dataset"])["kind"] != "tabular":
            raise Invalid(
                f"records are written to tabular datasets; {spec['dataset']!r} is not one"
            )
        if not sealed or len(sealed) > MAX_SEALED_BYTES:
            raise Invalid(f"sealed must be the sealed rows, at most {MAX_SEALED_BYTES // 1024} KiB")
        access = _request(ctx, "write", spec)
        access["sealed"] = sealed
        _record(ctx, access, Event.WRITE_REQUESTED)
        return _event(access)

    @transaction
    def ClaimWrite(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """The data organisation's executor takes a write, once, if consent still holds."""
        return _claim(ctx, access_id, "write")

    @transaction
    def CompleteWrite(self, ctx: Context, access_id: str) -> dict:  # noqa: N802
        """Register the stored rows of a write, every record the patient's (the transient
        field ``access`` lists them). Their part is registered after, in public (its
        hash names nobody): the data side reads no part before it is registered."""
        access, _ = _running(ctx, access_id, "write")
        spec = transient_json(ctx, ACCESS_FIELD, "the transient field 'access'")
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
        part = {
            "object_key": entries[0]["object_key"],
            "sha256": sha256_hex(spec.get("sha256", ""), "stored.sha256"),
            "rows": len(entries),
        }
        counts = register_records(ctx, access["dataset"], entries, access["reader"])
        access.update(
            status="DONE",
            completed_at=timestamp(now(ctx)),
            result={**counts, "record_ids": [entry["record_id"] for entry in entries],
                    "part": part},
        )  # fmt: skip
        _settle(ctx, access)
        emit(ctx, Event.WRITE_COMPLETED, _event(access))
        return _event(access)

    @transaction
    def FailWrite(self, ctx: Context, access_id: str, failure: str) -> dict:  # noqa: N802
        """The executor fails a write it cannot serve; ``failure`` as Fail's of a token."""
        return _fail(ctx, access_id, "write", failure)


def _listed(
    state: PrivateState, index: str, size: int, bookmark: str, fields: tuple[str, ...]
) -> tuple[list[dict], str]:
    """A page of the requests an index of ``state`` lists, each as ``fields``."""
    page, following = state.page(index, size, bookmark)
    ids = [entry_key.rsplit(SEPARATOR, 1)[1] for entry_key, _ in page]
    requests = state.read_many([state.key(ACCESS, access_id) for access_id in ids])
    return [{k: access[k] for k in fields} for access in requests if access], following


def _event(access: dict) -> dict:
    """What everyone may know of a request: that it exists, whose data side serves it,
    its kind and state (its reader signed it; whose records it is about stays private).
    It is also every submit's answer: an answer goes into the block, for every
    organisation to read; the request itself is read with GetAccess on its peers."""
    return {k: access[k] for k in ("access_id", "data_org", "kind", "status")}


#: The consent right each kind of request needs, and the event of its failure.
RIGHT = {"read": "R", "write": "W"}
FAILED = {"read": Event.READ_FAILED, "write": Event.WRITE_FAILED}


def _claim(ctx: Context, access_id: str, kind: str) -> dict:
    """The executor takes a request once, if the consent behind it still holds."""
    executor = require(ctx, "executor")
    access = _get(ctx, executor.organisation, access_id, kind)
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
    _store(ctx, access)
    emit(ctx, CLAIMED[kind], _event(access))
    return _event(access)


def _running(ctx: Context, access_id: str, kind: str):
    """A request the calling executor claimed and may still complete, and that executor:
    the consent it was claimed under must still cover all it was claimed for."""
    executor = require(ctx, "executor")
    access = _get(ctx, executor.organisation, access_id, kind)
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
    access = _get(ctx, require(ctx, "executor").organisation, access_id, kind)
    if access["status"] not in ("APPROVED", "RUNNING"):
        raise Conflict(f"{kind} request {access_id} is {access['status']}")
    failed = failure_argument(failure)
    access.update(status="FAILED", failure=failed, reason=failed["message"])
    _settle(ctx, access)
    emit(ctx, FAILED[kind], _event(access))
    return _event(access)


def _store(ctx: Context, access: dict) -> None:
    state = PrivateState(ctx, access["data_org"])
    state.write(state.key(ACCESS, access["access_id"]), access)


def _settle(ctx: Context, access: dict) -> None:
    """Store a request that has ended (DONE or FAILED): it is no longer open."""
    _store(ctx, access)
    state = PrivateState(ctx, access["data_org"])
    state.delete(state.key(OPEN_ACCESS, access["access_id"]))


def _request(ctx: Context, kind: str, spec: dict) -> dict:
    """A new read or write request of the caller's, if the patient's consent covers it."""
    who = caller(ctx)
    meta = get_dataset(ctx, spec["dataset"])
    dataset = meta["name"]
    patient = _patient(spec["patient"], meta)
    purpose = text(spec["purpose"], "purpose", 200)
    grant = find_grant(ctx, dataset, patient, who.key, RIGHT[kind], purpose)
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
    """Store a new request where its patient's access log and its executor find it."""
    _store(ctx, access)
    state = PrivateState(ctx, access["data_org"])
    state.write(state.key(PATIENT_ACCESS, state.hide(access["patient"]), access["access_id"]), {})
    state.write(state.key(OPEN_ACCESS, access["access_id"]), {})
    emit(ctx, event, _event(access))
