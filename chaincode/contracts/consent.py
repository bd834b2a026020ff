"""Patients' consent: who may read, write or compute on their data, for what, until when.

Only the patient, proven by their certificate, grants or revokes. A grant is a
first-class object with its own history: it names a dataset (or one record), a
grantee (``org:University`` or ``user:alice@University``), rights (any of R, W, C), a
purpose and an optional end. Without a grant nothing is allowed. Purposes: a grant
for ``any`` covers every request, one for ``research`` covers every research request
(all computations are research), any other must equal the request's purpose.
The executor asks who may compute right now, page by page, and records which patients
each computation used, so every patient can see their receipts.
"""

from __future__ import annotations

import json
import re

from flowblock.chaincode import Context, split_composite_key, transaction
from flowblock.chaincode.contracts import cohorts
from flowblock.chaincode.contracts.base import (
    Conflict,
    FlowBlockContract,
    Invalid,
    NotFound,
    Refused,
    caller,
    emit,
    key,
    name,
    now,
    page_size,
    paged,
    parse_time,
    read,
    require,
    text,
    timestamp,
    write,
)
from flowblock.chaincode.contracts.records import DATA_SIDE, RECORD, get_dataset
from flowblock.chaincode.contracts.tokens import get_token
from flowblock.vocabulary import Event

GRANT, CONSENT, PATIENT_GRANT = "grant", "consent", "patient~grant"
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


def find_grant(
    ctx: Context, dataset: str, patient: str, requester: str, right: str, purpose: str
) -> dict | None:
    """The grant (id and record restriction) that lets ``requester`` use ``right`` now:
    one on the whole dataset if there is one, else the first on a single record."""
    moment = timestamp(now(ctx))
    found = None
    for kv in ctx.stub.get_state_by_partial_composite_key(CONSENT, [dataset, patient]):
        entry = json.loads(kv.value)
        if grant_applies(entry, requester, right, purpose, moment):
            grant = {"grant_id": split_composite_key(kv.key)[1][2], "record_id": entry["record_id"]}
            if not grant["record_id"]:
                return grant
            found = found or grant
    return found


class ConsentContract(FlowBlockContract):
    name = "consent"

    @transaction
    def Grant(  # noqa: N802
        self, ctx: Context, dataset: str, to: str, rights: str, purpose: str, until: str,
        record_id: str,
    ) -> dict:  # fmt: skip
        """A patient grants rights on their data in ``dataset`` (or one record of it).
        Granting exactly what an active grant says returns that grant: a retry, or a
        client run again after a crash, adds no second one."""
        patient = require(ctx, "patient")
        meta = get_dataset(ctx, dataset)
        if patient.organisation != meta["organisation"]:
            raise Refused(
                f"{patient.key} has no data in {dataset!r}, held by {meta['organisation']}"
            )
        moment = now(ctx)
        ends = ""
        if until:
            ends_at = parse_time(until, "until")
            if ends_at <= moment:
                raise Invalid("until must be in the future")
            ends = timestamp(ends_at)
        if record_id:
            record = read(ctx, key(RECORD, dataset, name(record_id, "record_id")))
            if record is None or record["patient"] != patient.key:
                raise NotFound(f"{patient.key} has no record {record_id!r} in {dataset!r}")
        grant = {
            "grant_id": ctx.stub.tx_id,
            "patient": patient.key,
            "dataset": dataset,
            "record_id": record_id,
            "grantee": grantee(to),
            "rights": normalise_rights(rights),
            "purpose": text(purpose, "purpose", 200),
            "until": ends,
            "status": "ACTIVE",
            "granted_at": timestamp(moment),
            "revoked_at": "",
        }
        same = self._same_grant(ctx, dataset, patient.key, _entry(grant))
        if same is not None:  # granted again (a client that retried): nothing new
            return same
        grant_id = grant["grant_id"]
        write(ctx, key(GRANT, grant_id), grant)
        write(ctx, key(CONSENT, dataset, patient.key, grant_id), _entry(grant))
        ctx.stub.put_state(key(PATIENT_GRANT, patient.key, grant_id), b"\x00")
        emit(ctx, Event.CONSENT_GRANTED, _event(grant))
        return grant

    def _same_grant(self, ctx: Context, dataset: str, patient: str, entry: dict) -> dict | None:
        """The patient's active grant on ``dataset`` that says exactly ``entry``, if any."""
        for kv in ctx.stub.get_state_by_partial_composite_key(CONSENT, [dataset, patient]):
            if json.loads(kv.value) == entry:
                return self._grant(ctx, split_composite_key(kv.key)[1][2])
        return None

    @transaction
    def Revoke(self, ctx: Context, dataset: str, to: str, rights: str, record_id: str) -> list:  # noqa: N802
        """Take ``rights`` back from every active grant of the caller to ``to`` on ``dataset``."""
        patient = require(ctx, "patient")
        taken = normalise_rights(rights)
        grantee(to)
        changed = []
        for kv in ctx.stub.get_state_by_partial_composite_key(CONSENT, [dataset, patient.key]):
            entry = json.loads(kv.value)
            matches = entry["grantee"] == to and entry["record_id"] == record_id
            if matches and set(taken) & set(entry["rights"]):
                changed.append(self._take(ctx, split_composite_key(kv.key)[1][2], taken))
        if not changed:
            raise NotFound(f"{patient.key} has no active grant of {taken} to {to} on {dataset!r}")
        emit(ctx, Event.CONSENT_REVOKED, {"grants": [_event(grant) for grant in changed]})
        return changed

    @transaction
    def RevokeGrant(self, ctx: Context, grant_id: str) -> dict:  # noqa: N802
        """Revoke one grant entirely."""
        grant = self._grant(ctx, grant_id)
        if caller(ctx).key != grant["patient"] or caller(ctx).role != "patient":
            raise Refused("only the patient who granted it may revoke a grant")
        if grant["status"] != "ACTIVE":
            raise Conflict(f"grant {grant_id} is already {grant['status'].lower()}")
        taken = self._take(ctx, grant_id, grant["rights"])
        emit(ctx, Event.CONSENT_REVOKED, {"grants": [_event(taken)]})
        return taken

    def _take(self, ctx: Context, grant_id: str, rights: str) -> dict:
        grant = self._grant(ctx, grant_id)
        left = "".join(letter for letter in grant["rights"] if letter not in rights)
        consent_key = key(CONSENT, grant["dataset"], grant["patient"], grant_id)
        grant["rights"] = left
        if left:
            write(ctx, consent_key, _entry(grant))
        else:
            grant.update(status="REVOKED", revoked_at=timestamp(now(ctx)))
            ctx.stub.del_state(consent_key)
        write(ctx, key(GRANT, grant_id), grant)
        return grant  # the caller emits one event for all it revoked (one per transaction)

    @transaction(submit=False)
    def MyGrants(self, ctx: Context, size: int, bookmark: str) -> dict:  # noqa: N802
        patient = require(ctx, "patient")
        page, following = paged(ctx, PATIENT_GRANT, [patient.key], size, bookmark)
        grants = [self._grant(ctx, split_composite_key(kv.key)[1][1]) for kv in page]
        return {"grants": grants, "bookmark": following}

    @transaction(submit=False)
    def GetGrant(self, ctx: Context, grant_id: str) -> dict:  # noqa: N802
        grant = self._grant(ctx, grant_id)
        self._may_see(ctx, grant)
        return grant

    @transaction(submit=False)
    def GrantHistory(self, ctx: Context, grant_id: str) -> list:  # noqa: N802
        self._may_see(ctx, self._grant(ctx, grant_id))
        return [
            {"tx_id": change.tx_id, "time": timestamp(change.timestamp),
             "grant": json.loads(change.value)}
            for change in ctx.stub.get_history_for_key(key(GRANT, grant_id))
        ]  # fmt: skip

    @transaction(submit=False)
    def WhoMayCompute(  # noqa: N802
        self, ctx: Context, dataset: str, requester: str, purpose: str, size: int, bookmark: str
    ) -> dict:
        """A page of the patients whose consent lets ``requester`` compute now, for ``purpose``.

        Only the data organisation's side may ask: a cohort's members are never shown to
        the researcher. ``records`` is None where the grant covers the whole dataset.
        """
        require(ctx, *DATA_SIDE, organisation=get_dataset(ctx, dataset)["organisation"])
        moment = timestamp(now(ctx))
        page, following = paged(ctx, CONSENT, [dataset], size, bookmark)
        cohort: dict[str, list[str] | None] = {}
        for kv in page:
            entry = json.loads(kv.value)
            if not grant_applies(entry, requester, "C", purpose, moment):
                continue
            patient = split_composite_key(kv.key)[1][1]
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
    def _grant(ctx: Context, grant_id: str) -> dict:
        grant = read(ctx, key(GRANT, grant_id))
        if grant is None:
            raise NotFound(f"there is no grant {grant_id[:80]!r}")
        return grant

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
    """What the consent index keeps of a grant, enough to decide without reading it."""
    return {field: grant[field] for field in ("grantee", "rights", "purpose", "until", "record_id")}


def _event(grant: dict) -> dict:
    return {field: grant[field] for field in ("grant_id", "dataset", "grantee", "rights", "status")}
