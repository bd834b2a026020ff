"""Patients' consent: who may read, write or compute on their data, for what, until when.

Only the patient, proven by their certificate, grants or revokes. A grant is a
first-class object with its own history: it names a dataset (or one record), a
grantee (``org:University`` or ``user:alice@University``), rights (any of R, W, C), a
purpose and an optional end. Without a grant nothing is allowed. Purposes: a grant
for ``any`` covers every request, one for ``research`` covers every research request
(all computations are research), any other must equal the request's purpose.

Whose consent says what names patients, so it lives in the data organisation's private
collection (:mod:`.private`), never on the shared ledger: a grant's fields travel in the
transient field ``consent``, the organisation's peer alone endorses (its collection's
endorsement policy), and the block holds hashes nobody can test a guess against. A
submit answers with ids only (its answer goes into the block); GetGrant reads the rest. The
executor asks who may compute right now, page by page, on its own peer, and records
which patients each computation used, so every patient can see their receipts.
"""

from __future__ import annotations

import re

from flowblock.chaincode import Context, transaction
from flowblock.chaincode.contracts import cohorts, private
from flowblock.chaincode.contracts.base import (
    Conflict,
    FlowBlockContract,
    Invalid,
    NotFound,
    Refused,
    caller,
    emit,
    name,
    now,
    page_size,
    parse_time,
    require,
    text,
    timestamp,
    transient_argument,
    transient_json,
)
from flowblock.chaincode.contracts.private import SEPARATOR, PrivateState
from flowblock.chaincode.contracts.records import (
    DATA_SIDE,
    get_dataset,
    patient_key,
    record_owner,
)
from flowblock.chaincode.contracts.tokens import get_token
from flowblock.vocabulary import CONSENT_FIELD, ENROL_FIELD, Event

GRANT, CONSENTS, PATIENT_GRANT = "grant", "consents", "patient-grant"
GRANT_FIELDS = ("dataset", "to", "rights", "purpose", "until", "record_id")
REVOKE_FIELDS = ("dataset", "to", "rights", "record_id")
#: The most pseudonyms one enrolment records.
MAX_ENROLMENTS = 1_000
#: What a change of a grant may change, kept in its history.
CHANGING = ("rights", "status", "revoked_at")
RIGHTS = "RWC"
BROAD_PURPOSES = ("any", "research")
_GRANTEE = re.compile(
    r"^(org:[A-Za-z][A-Za-z0-9-]{0,31}|user:[A-Za-z0-9][A-Za-z0-9._@-]{0,63}@[A-Za-z][A-Za-z0-9-]{0,31})$"
)


def normalise_rights(rights: str) -> str:
    letters = set(rights.upper())
    if not letters or not letters <= set(RIGHTS):
        raise Invalid(f"rights must be some of R (read), W (write), C (compute), got {rights!r}")
    return "".join(letter for letter in RIGHTS if letter in letters)


def grantee(value: str) -> str:
    if not _GRANTEE.match(value):
        raise Invalid(
            f"grantee must be 'org:Organisation' or 'user:name@Organisation', got {value[:60]!r}"
        )
    return value


def purpose_covers(granted: str, requested: str) -> bool:
    granted = granted.strip().lower()
    return granted in BROAD_PURPOSES or granted == requested.strip().lower()


def grant_applies(entry: dict, requester: str, right: str, purpose: str, moment: str) -> bool:
    """Whether a consent entry lets ``requester`` (name@Org) use ``right`` for ``purpose``."""
    organisation = requester.rsplit("@", 1)[-1]
    return (
        right in entry["rights"]
        and entry["grantee"] in (f"user:{requester}", f"org:{organisation}")
        and purpose_covers(entry["purpose"], purpose)
        and (not entry["until"] or moment < entry["until"])
    )


def active_grants(state: PrivateState, dataset: str, patient: str) -> tuple[str, dict]:
    """Where a patient's active grants on a dataset are, and they (grant id → entry)."""
    where = state.key(CONSENTS, dataset, state.hide(patient))
    return where, (state.read(where) or {}).get("grants", {})


def find_grant(
    ctx: Context, dataset: str, patient: str, requester: str, right: str, purpose: str
) -> dict | None:
    """The grant (id and record restriction) that lets ``requester`` use ``right`` now:
    one on the whole dataset if there is one, else the first on a single record."""
    state = PrivateState(ctx, get_dataset(ctx, dataset)["organisation"])
    moment = timestamp(now(ctx))
    found = None
    _, active = active_grants(state, dataset, patient)
    for grant_id, entry in sorted(active.items()):
        if grant_applies(entry, requester, right, purpose, moment):
            grant = {"grant_id": grant_id, "record_id": entry["record_id"]}
            if not grant["record_id"]:
                return grant
            found = found or grant
    return found


class ConsentContract(FlowBlockContract):
    name = "consent"

    @transaction
    def SetUpCollection(self, ctx: Context) -> dict:  # noqa: N802
        """Give the caller's organisation's private collection its secret (the transient
        field ``secret``), once: its executor does when it starts; again is a conflict."""
        who = require(ctx, "admin", "steward", "executor")
        private.set_up(ctx, who.organisation)
        return {"organisation": who.organisation}

    @transaction
    def Enrol(self, ctx: Context) -> dict:  # noqa: N802
        """Record which patient each new certificate's pseudonym stands for (the
        transient field ``patients``: pseudonym → patient id, at most 1,000), as the
        organisation issues its patients' certificates; kept in its private collection.
        Enrolling the same again changes nothing; a pseudonym never moves to another
        patient."""
        who = require(ctx, "admin", "steward")
        batch = transient_json(ctx, ENROL_FIELD, "patients")
        if not 1 <= len(batch) <= MAX_ENROLMENTS:
            raise Invalid(f"patients must map 1 to {MAX_ENROLMENTS:,} pseudonyms to patient ids")
        state = PrivateState(ctx, who.organisation)
        keys = [state.key(private.ENROLMENT, name(p, "a pseudonym")) for p in batch]
        patients = [name(str(patient), "a patient id") for patient in batch.values()]
        enrolled = [patient_key(patient, who.organisation) for patient in patients]
        for pseudonym, patient, found in zip(batch, enrolled, state.read_many(keys), strict=True):
            if found is not None and found["patient"] != patient:
                raise Conflict(f"the pseudonym {pseudonym!r} enrols another patient already")
        for key_, patient in zip(keys, enrolled, strict=True):
            state.write(key_, {"patient": patient})
        return {"enrolled": len(keys)}

    @transaction
    def Grant(self, ctx: Context) -> dict:  # noqa: N802
        """A patient grants rights on their data in a dataset (or one record of it); the
        fields come in the transient field ``consent``. Granting exactly what an active
        grant says returns that grant: a retry, or a client run again after a crash, adds
        no second one."""
        patient = require(ctx, "patient")
        spec = transient_argument(ctx, CONSENT_FIELD, GRANT_FIELDS)
        dataset, record_id = spec["dataset"], spec["record_id"]
        meta = get_dataset(ctx, dataset)
        if patient.organisation != meta["organisation"]:
            raise Refused(
                f"{patient.key} has no data in {dataset!r}, held by {meta['organisation']}"
            )
        moment = now(ctx)
        ends = ""
        if spec["until"]:
            ends_at = parse_time(spec["until"], "until")
            if ends_at <= moment:
                raise Invalid("until must be in the future")
            ends = timestamp(ends_at)
        if record_id and record_owner(ctx, meta, name(record_id, "record_id")) != patient.key:
            raise NotFound(f"{patient.key} has no record {record_id!r} in {dataset!r}")
        grant = {
            "grant_id": ctx.stub.tx_id,
            "patient": patient.key,
            "dataset": dataset,
            "record_id": record_id,
            "grantee": grantee(spec["to"]),
            "rights": normalise_rights(spec["rights"]),
            "purpose": text(spec["purpose"], "purpose", 200),
            "until": ends,
            "status": "ACTIVE",
            "granted_at": timestamp(moment),
            "revoked_at": "",
        }
        state = PrivateState(ctx, meta["organisation"])
        where, active = active_grants(state, dataset, patient.key)
        for grant_id, entry in sorted(active.items()):
            if entry == _entry(grant):  # granted again (a client that retried): nothing new
                # ... but something written: a transaction that writes nothing private
                # would need every organisation's endorsement, which no other can give.
                state.write(where, {"grants": active})
                return {"grant_id": grant_id}
        grant_id = grant["grant_id"]
        state.write(where, {"grants": {**active, grant_id: _entry(grant)}})
        _store(state, grant, ctx.stub.tx_id)
        state.write(state.key(PATIENT_GRANT, state.hide(patient.key), grant_id), {})
        emit(ctx, Event.CONSENT_GRANTED, {"grant_id": grant_id})
        return {"grant_id": grant_id}

    @transaction
    def Revoke(self, ctx: Context) -> dict:  # noqa: N802
        """Take rights back from every active grant of the caller to a grantee on a
        dataset (the transient field ``consent`` gives dataset, to, rights, record_id)."""
        patient = require(ctx, "patient")
        spec = transient_argument(ctx, CONSENT_FIELD, REVOKE_FIELDS)
        dataset, to = spec["dataset"], grantee(spec["to"])
        taken = normalise_rights(spec["rights"])
        state = PrivateState(ctx, get_dataset(ctx, dataset)["organisation"])
        where, active = active_grants(state, dataset, patient.key)
        chosen = [
            grant_id for grant_id, entry in sorted(active.items())
            if entry["grantee"] == to and entry["record_id"] == spec["record_id"]
            and set(taken) & set(entry["rights"])
        ]  # fmt: skip
        if not chosen:
            raise NotFound(f"{patient.key} has no active grant of {taken} to {to} on {dataset!r}")
        changed = [_take(ctx, state, active, grant_id, taken) for grant_id in chosen]
        state.write(where, {"grants": active})
        emit(ctx, Event.CONSENT_REVOKED, {"grants": [grant["grant_id"] for grant in changed]})
        return {"grants": [grant["grant_id"] for grant in changed]}

    @transaction
    def RevokeGrant(self, ctx: Context, grant_id: str) -> dict:  # noqa: N802
        """Revoke one grant entirely."""
        patient = require(ctx, "patient")
        state = PrivateState(ctx, patient.organisation)
        grant = _grant(state, grant_id)
        if patient.key != grant["patient"]:
            raise Refused("only the patient who granted it may revoke a grant")
        if grant["status"] != "ACTIVE":
            raise Conflict(f"grant {grant_id} is already {grant['status'].lower()}")
        where, active = active_grants(state, grant["dataset"], patient.key)
        taken = _take(ctx, state, active, grant_id, grant["rights"])
        state.write(where, {"grants": active})
        emit(ctx, Event.CONSENT_REVOKED, {"grants": [grant_id]})
        return {"grants": [taken["grant_id"]]}

    @transaction(submit=False)
    def MyGrants(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """The calling patient's grants, read on their organisation's peer."""
        patient = require(ctx, "patient")
        state = PrivateState(ctx, patient.organisation)
        page, following = state.page(
            state.key(PATIENT_GRANT, state.hide(patient.key)), size, bookmark
        )
        grants = [_grant(state, entry_key.rsplit(SEPARATOR, 1)[1]) for entry_key, _ in page]
        return {"grants": grants, "bookmark": following}

    @transaction(submit=False)
    def GetGrant(self, ctx: Context, grant_id: str) -> dict:  # noqa: N802
        """A grant, for its patient and its data organisation, read on their own peer."""
        grant = _grant(PrivateState(ctx, caller(ctx).organisation), grant_id)
        self._may_see(ctx, grant)
        return grant

    @transaction(submit=False)
    def GrantHistory(self, ctx: Context, grant_id: str) -> list:  # noqa: N802
        """Every change of a grant: a private value has no history of its own in Fabric,
        so each grant keeps its changes."""
        grant = _grant(PrivateState(ctx, caller(ctx).organisation), grant_id, history=True)
        self._may_see(ctx, grant)
        changes = grant.pop("history")
        return [
            {"tx_id": change["tx_id"], "time": change["time"],
             "grant": {**grant, **{k: change[k] for k in CHANGING}}}
            for change in changes
        ]  # fmt: skip

    @transaction(submit=False)
    def WhoMayCompute(  # noqa: N802
        self, ctx: Context, dataset: str, requester: str, purpose: str, size: int, bookmark: str
    ) -> dict:
        """A page of the patients whose consent lets ``requester`` compute now, for ``purpose``.

        Only the data organisation's side may ask, on its own peer: a cohort's members
        are never shown to the researcher. ``records`` is None where the grant covers
        the whole dataset.
        """
        organisation = get_dataset(ctx, dataset)["organisation"]
        require(ctx, *DATA_SIDE, organisation=organisation)
        state = PrivateState(ctx, organisation)
        moment = timestamp(now(ctx))
        page, following = state.page(state.key(CONSENTS, dataset), size, bookmark)
        cohort: dict[str, list[str] | None] = {}
        for _, consents in page:
            for entry in consents["grants"].values():
                if not grant_applies(entry, requester, "C", purpose, moment):
                    continue
                patient = entry["patient"]
                if not entry["record_id"]:
                    cohort[patient] = None
                elif cohort.get(patient, []) is not None:
                    cohort.setdefault(patient, []).append(entry["record_id"])
        return {
            "patients": [{"patient": p, "records": r} for p, r in cohort.items()],
            "bookmark": following,
        }

    @transaction(submit=False)
    def MayAccess(  # noqa: N802
        self, ctx: Context, dataset: str, patient: str, requester: str, right: str,
        purpose: str,
    ) -> dict:  # fmt: skip
        """Whether ``requester`` may use ``right`` on ``patient``'s data now, and by which grant."""
        require(ctx, *DATA_SIDE, organisation=get_dataset(ctx, dataset)["organisation"])
        found = find_grant(ctx, dataset, patient, requester, normalise_rights(right), purpose)
        if found is None:
            return {"allowed": False, "grant_id": "", "record_id": ""}
        return {"allowed": True, **found}

    @transaction
    def RecordUsage(self, ctx: Context, token_id: str) -> dict:  # noqa: N802
        """The executor records, privately, one part of the cohort a completed computation
        used (in the transient field ``cohort``; see ``contracts.cohorts``)."""
        token = get_token(ctx, token_id)
        require(ctx, "executor", organisation=token["data_org"])
        if token["status"] != "DONE":
            raise Conflict(f"token {token_id} is {token['status']}, not DONE")
        index = cohorts.record_part(ctx, token)
        emit(ctx, Event.USAGE_RECORDED, {"token_id": token_id})
        return {"token_id": token_id, "part": index}

    @transaction(submit=False)
    def MyReceipts(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        """The computations that used the calling patient's data, read on their
        organisation's peer from its private collection."""
        patient = require(ctx, "patient")
        receipts, following = cohorts.receipts_of(
            ctx, patient.key, patient.organisation, page_size(size), bookmark, get_token
        )
        return {"receipts": receipts, "bookmark": following}

    @transaction(submit=False)
    def Cohort(self, ctx: Context, token_id: str) -> dict:  # noqa: N802
        """The opening of a token's cohort commitment: for the data organisation's
        auditor, steward or executor alone."""
        token = get_token(ctx, token_id)
        require(ctx, "auditor", "steward", "executor", organisation=token["data_org"])
        return cohorts.opening(ctx, token)

    @staticmethod
    def _may_see(ctx: Context, grant: dict) -> None:
        who = caller(ctx)
        if who.key == grant["patient"] and who.role == "patient":
            return
        if (
            who.role in DATA_SIDE
            and who.organisation == get_dataset(ctx, grant["dataset"])["organisation"]
        ):
            return
        raise Refused(f"{who.key} may not see this grant")


def _entry(grant: dict) -> dict:
    """What a patient's consents keep of a grant, enough to decide without reading it."""
    fields = ("patient", "grantee", "rights", "purpose", "until", "record_id")
    return {field: grant[field] for field in fields}


def _grant(state: PrivateState, grant_id: str, history: bool = False) -> dict:
    """A grant as its patient and the data organisation see it (with its changes if
    ``history``)."""
    missing = f"there is no grant {grant_id[:80]!r}"
    return state.entry(state.key(GRANT, name(grant_id, "grant_id")), missing, history)


def _store(state: PrivateState, grant: dict, tx_id: str) -> None:
    """Write a grant as it is now, its changes so far kept with it."""
    stored = state.read(state.key(GRANT, grant["grant_id"]))
    changes = stored["history"] if stored else []
    change = {"tx_id": tx_id, "time": grant["revoked_at"] or grant["granted_at"],
              **{k: grant[k] for k in CHANGING}}  # fmt: skip
    state.write(state.key(GRANT, grant["grant_id"]), {**grant, "history": [*changes, change]})


def _take(ctx: Context, state: PrivateState, active: dict, grant_id: str, rights: str) -> dict:
    """Take ``rights`` from an active grant; ``active`` (the patient's consents on its
    dataset) is changed in place, for the caller to write once."""
    grant = _grant(state, grant_id)
    left = "".join(letter for letter in grant["rights"] if letter not in rights)
    grant["rights"] = left
    if left:
        active[grant_id] = _entry(grant)
    else:
        grant.update(status="REVOKED", revoked_at=timestamp(now(ctx)))
        active.pop(grant_id, None)
    _store(state, grant, ctx.stub.tx_id)
    return grant
