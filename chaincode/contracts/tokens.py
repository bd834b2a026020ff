"""Computation tokens: a researcher's request, its approval, and its one execution.

A researcher requests method@version on a dataset with parameters (checked against
the method's schema), a purpose and optional input tokens (flows). The data
organisation's rules approve it at once or leave it PENDING for its admin, who
approves or denies with a reason. The executor of that organisation claims an
APPROVED token exactly once (RUNNING), then completes it with the encrypted result and
its provenance (result, cohort, code and policy hashes; ε charged in the same
transaction) or fails it with a typed failure (a kind clients decide by, the disclosure
rule that refused, the status of a refusal, and a message for people). Tokens expire.
Requesters see their own tokens, admins their organisation's, auditors every token's
metadata.

    PENDING ──approve──▶ APPROVED ──claim──▶ RUNNING ──complete──▶ DONE
       │ deny               │ deny / fail       └──fail──▶ FAILED
       ▼                    ▼
     DENIED            DENIED / FAILED          (PENDING/APPROVED past expiry: EXPIRED)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

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
    parse_time,
    read,
    require,
    sha256_hex,
    text,
    timestamp,
    write,
)
from flowblock.chaincode.contracts.budget import charge, has_budget, require_budget, to_micro
from flowblock.chaincode.contracts.catalogue import get_method, method_for
from flowblock.chaincode.contracts.cohorts import check_commitment
from flowblock.chaincode.contracts.records import get_dataset
from flowblock.errors import InvalidArgument
from flowblock.labels import check_labels
from flowblock.schema import validate
from flowblock.vocabulary import MAX_REQUEST_KEY_BYTES, REQUEST_KEY_FIELD, Event

TOKEN, BY_REQUESTER, BY_ORG, RULES = "token", "requester~token", "org~token", "rules"
REQUEST_KEY = "requester~key"
DEFAULT_TTL_HOURS = 72
#: How far ahead of the ledger's time a request may be dated (clocks differ a little).
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_INPUTS = 16
#: Largest encrypted result a token carries; bigger outputs stay data-side.
MAX_RESULT_BYTES = 256 * 1024
TERMINAL = ("DONE", "FAILED", "DENIED")
STATUSES = ("PENDING", "APPROVED", "RUNNING", "DONE", "FAILED", "DENIED", "EXPIRED")


def get_token(ctx: Context, token_id: str) -> dict:
    token = read(ctx, key(TOKEN, token_id))
    if token is None:
        raise NotFound(f"there is no computation token {token_id[:80]!r}")
    return token


def effective_status(token: dict, moment: str) -> str:
    """EXPIRED for a token that waited past its expiry; its stored status otherwise."""
    if token["status"] in ("PENDING", "APPROVED") and moment >= token["expires_at"]:
        return "EXPIRED"
    return token["status"]


def rules_of(ctx: Context, organisation: str) -> dict:
    return read(ctx, key(RULES, organisation)) or {
        "auto_approve": {"methods": [], "purposes": [], "organisations": [], "max_epsilon": 0},
        "token_ttl_hours": DEFAULT_TTL_HOURS,
    }


def _dp_only(rules: dict, dataset: str, method: dict) -> bool:
    """Whether the organisation answers this method on this dataset only under DP."""
    only = rules.get("dp_only", {})
    return dataset in only.get("datasets", []) or method["disclosure_class"] in only.get(
        "classes", []
    )


def auto_approves(rules: dict, token: dict, method: dict) -> bool:
    """Whether the organisation's rules approve a token without its admin."""
    auto = rules["auto_approve"]
    epsilon = token["epsilon"]
    return (
        (
            method["name"] in auto["methods"]
            or f"{method['name']}@{method['version']}" in auto["methods"]
        )
        and token["purpose"].strip().lower() in [p.strip().lower() for p in auto["purposes"]]
        and token["requester"].rsplit("@", 1)[1] in auto["organisations"]
        and epsilon <= auto.get("max_epsilon", 0)
    )


class ComputationContract(FlowBlockContract):
    name = "computation"

    # -- the data organisation's rules ----------------------------------------------

    @transaction
    def SetRules(self, ctx: Context, rules: str) -> dict:  # noqa: N802
        """An admin sets their organisation's auto-approval rules and token lifetime."""
        admin = require(ctx, "admin")
        spec = json_argument(rules, "rules")
        auto = spec.get("auto_approve", {})
        dp_only = spec.get("dp_only", {})
        if not isinstance(auto, dict) or not isinstance(dp_only, dict):
            raise Invalid("rules.auto_approve and rules.dp_only must be JSON objects")
        value = {
            "auto_approve": {
                field: _names(auto.get(field, []), f"rules.auto_approve.{field}")
                for field in ("methods", "purposes", "organisations")
            },
            "token_ttl_hours": spec.get("token_ttl_hours", DEFAULT_TTL_HOURS),
            # Datasets and disclosure classes answered only with differential privacy.
            "dp_only": {
                field: _names(dp_only.get(field, []), f"rules.dp_only.{field}")
                for field in ("datasets", "classes")
            },
        }
        value["auto_approve"]["max_epsilon"] = (
            to_micro(auto.get("max_epsilon", 0), "rules.auto_approve.max_epsilon") / 1_000_000
        )
        ttl = value["token_ttl_hours"]
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 24 * 365:
            raise Invalid("rules.token_ttl_hours must be a whole number of hours, 1 to 8760")
        write(ctx, key(RULES, admin.organisation), value)
        emit(ctx, Event.RULES_SET, {"organisation": admin.organisation})
        return value

    @transaction(submit=False)
    def GetRules(self, ctx: Context, organisation: str) -> dict:  # noqa: N802
        return rules_of(ctx, organisation)

    # -- the life of a token -----------------------------------------------------------

    @transaction
    def Request(  # noqa: N802
        self, ctx: Context, method: str, version: str, dataset: str, params: str, purpose: str,
        inputs: str,
    ) -> dict:  # fmt: skip
        """A researcher asks for a computation; returns the new token.

        An optional request key in the transient field ``request_key`` makes asking
        again safe: the same researcher's second request with that key returns the
        token of the first (a client run again after a crash makes no duplicate)."""
        researcher = require(ctx, "researcher")
        request_key = self._request_key(ctx, researcher.key)
        if request_key and (earlier := ctx.stub.get_state(request_key)) is not None:
            return get_token(ctx, earlier.decode())
        get_method(ctx, method, version)  # an unknown method is named before an unknown dataset
        meta = get_dataset(ctx, dataset)
        # The data organisation's own version: its executor runs it, its rules approve it.
        found = method_for(ctx, method, version, meta["organisation"])
        if not found["enabled"]:
            raise Refused(f"{method}@{found['version']} is disabled in the catalogue")
        arguments = json_argument(params, "params")
        try:
            validate(arguments, found["parameters"], "params")
            groups = arguments.get("group_by")  # labels are public or absent
            if isinstance(groups, list):
                labels = (("params.group_by", str(column)) for column in groups)
                check_labels(labels, meta.get("schema") or {})
        except InvalidArgument as error:
            raise Invalid(str(error).rstrip(".")) from None
        input_kind = found["input_kind"]
        if input_kind != "tokens" and input_kind != meta["kind"]:
            raise Invalid(f"{method} works on {input_kind} data; {dataset!r} is {meta['kind']}")
        input_tokens = self._inputs(
            ctx, json_argument(inputs or "[]", "inputs", list), researcher.key, meta
        )
        epsilon = arguments.get("epsilon", 0)
        to_micro(epsilon, "params.epsilon")
        rules = rules_of(ctx, meta["organisation"])
        if not epsilon and _dp_only(rules, dataset, found):
            raise Refused(
                f"{meta['organisation']} answers {found['name']} on {dataset!r} only with "
                "differential privacy: ask again with an epsilon"
            )
        if epsilon:  # refused now, not left waiting: a later grant lets the next one through
            require_budget(ctx, dataset, researcher.key, epsilon)
        moment = now(ctx)
        token = {
            "token_id": ctx.stub.tx_id,
            "requester": researcher.key,
            # Public: the executor seals the result to this certificate's key.
            "requester_certificate": ctx.client_identity.certificate_pem,
            "method": found["name"],
            "version": found["version"],
            "code_hash": found["code_hash"],
            "dataset": dataset,
            "data_org": meta["organisation"],
            "params": arguments,
            "purpose": text(purpose, "purpose", 200),
            "inputs": input_tokens,
            "epsilon": epsilon,
            "status": "PENDING",
            "created_at": timestamp(moment),
            "expires_at": timestamp(moment + dt.timedelta(hours=rules["token_ttl_hours"])),
            "decided_by": "",
            "decided_at": "",
            "reason": "",
            "failure": None,
            "claimed_by": "",
            "progress": 0,
            "result": None,
            "completed_at": "",
        }
        if auto_approves(rules, token, found):
            token.update(status="APPROVED", decided_by="rules", decided_at=token["created_at"])
        else:  # say whose decision it waits for
            token["awaiting"] = f"approval by an admin of {meta['organisation']}"
        self._save(ctx, token, new=True)
        if request_key:
            ctx.stub.put_state(request_key, token["token_id"].encode())
        emit(
            ctx,
            Event.COMPUTATION_APPROVED
            if token["status"] == "APPROVED"
            else Event.COMPUTATION_REQUESTED,
            _event(token),
        )
        return token

    @transaction
    def Approve(self, ctx: Context, token_id: str) -> dict:  # noqa: N802
        token = get_token(ctx, token_id)
        admin = require(ctx, "admin", organisation=token["data_org"])
        self._expect(ctx, token, "PENDING")
        self._still_runnable(ctx, token)
        if token["epsilon"] and not has_budget(
            ctx, token["dataset"], token["requester"], token["epsilon"]
        ):
            raise Conflict(
                f"{token['requester']} has too little privacy budget left for this token"
            )
        token.update(status="APPROVED", decided_by=admin.key, decided_at=timestamp(now(ctx)))
        token.pop("awaiting", None)
        return self._change(ctx, token, Event.COMPUTATION_APPROVED)

    @transaction
    def Deny(self, ctx: Context, token_id: str, reason: str) -> dict:  # noqa: N802
        token = get_token(ctx, token_id)
        admin = require(ctx, "admin", organisation=token["data_org"])
        self._expect(ctx, token, "PENDING", "APPROVED")
        token.update(
            status="DENIED",
            decided_by=admin.key,
            decided_at=timestamp(now(ctx)),
            reason=text(reason, "reason"),
        )
        token.pop("awaiting", None)
        return self._change(ctx, token, Event.COMPUTATION_DENIED)

    @transaction
    def Claim(self, ctx: Context, token_id: str) -> dict:  # noqa: N802
        """The data organisation's executor takes an approved token; only once."""
        token = get_token(ctx, token_id)
        executor = require(ctx, "executor", organisation=token["data_org"])
        self._expect(ctx, token, "APPROVED")
        self._still_runnable(ctx, token)
        if token["epsilon"]:  # spent by other tokens since approval: refused before any read
            require_budget(ctx, token["dataset"], token["requester"], token["epsilon"])
        token.update(status="RUNNING", claimed_by=executor.key, claimed_at=timestamp(now(ctx)))
        return self._change(ctx, token, Event.COMPUTATION_CLAIMED)

    @transaction
    def ReportProgress(self, ctx: Context, token_id: str, percent: int, message: str) -> dict:  # noqa: N802
        token = self._claimed(ctx, token_id)
        if not 0 <= percent <= 100:
            raise Invalid("percent must be between 0 and 100")
        token.update(progress=percent, progress_message=message[:200])
        return self._change(ctx, token, Event.COMPUTATION_PROGRESS, progress=percent)

    @transaction
    def Complete(self, ctx: Context, token_id: str, result: str) -> dict:  # noqa: N802
        """The claiming executor posts the encrypted result and its provenance."""
        token = self._claimed(ctx, token_id)
        spec = json_argument(result, "result")
        encrypted = spec.get("encrypted", "")
        if not isinstance(encrypted, str) or not encrypted:
            raise Invalid("result.encrypted must be the encrypted result, base64")
        if len(encrypted) > MAX_RESULT_BYTES:
            raise Invalid(f"result.encrypted must be at most {MAX_RESULT_BYTES // 1024} KiB")
        code_hash = sha256_hex(spec.get("code_hash", ""), "result.code_hash")
        if code_hash != token["code_hash"]:
            raise Conflict(
                f"result.code_hash is not the hash of {token['method']}@{token['version']} "
                "in the catalogue"
            )
        # The ε charged is the one the token was approved for, whatever the executor says.
        epsilon = token["epsilon"]
        if to_micro(spec.get("epsilon", epsilon), "result.epsilon") != to_micro(epsilon):
            raise Invalid(f"result.epsilon must be the ε the token was approved for, {epsilon:g}")
        cohort_size = released_cohort_size(spec.get("cohort_size"), bool(epsilon))
        commitment, parts = check_commitment(spec)
        if epsilon:
            charge(ctx, token["dataset"], token["requester"], epsilon)
        token.update(
            status="DONE",
            progress=100,
            completed_at=timestamp(now(ctx)),
            result={
                "encrypted": encrypted,
                "result_hash": sha256_hex(spec.get("result_hash", ""), "result.result_hash"),
                # The cohort itself goes to the data organisation's private collection.
                "cohort_commitment": commitment,
                "cohort_parts": parts,
                "cohort_size": cohort_size,
                "code_hash": code_hash,
                "policy_hash": sha256_hex(spec.get("policy_hash", ""), "result.policy_hash"),
                # The output kept data-side for later tokens of a flow, by its hash.
                "output_hash": sha256_hex(spec["output_hash"], "result.output_hash")
                if spec.get("output_hash")
                else "",
                "epsilon": epsilon,
            },
        )
        return self._change(ctx, token, Event.COMPUTATION_COMPLETED)

    @transaction
    def Fail(self, ctx: Context, token_id: str, failure: str) -> dict:  # noqa: N802
        """The executor fails a token it cannot or may not complete, saying why: ``failure``
        is a flowblock.vocabulary.Failure as JSON, stored on the token as ``failure`` (its
        message also as ``reason``, the words a denial has there too)."""
        token = get_token(ctx, token_id)
        executor = require(ctx, "executor", organisation=token["data_org"])
        if token["status"] not in ("APPROVED", "RUNNING"):
            raise Conflict(
                f"token {token_id} is {token['status']}; only an approved or running one can fail"
            )
        if token["status"] == "RUNNING" and token["claimed_by"] != executor.key:
            raise Refused(
                f"token {token_id} was claimed by {token['claimed_by']}, not {executor.key}"
            )
        failed = failure_argument(failure)
        token.update(
            status="FAILED",
            failure=failed,
            reason=failed["message"],
            completed_at=timestamp(now(ctx)),
        )
        return self._change(ctx, token, Event.COMPUTATION_FAILED)

    # -- reading tokens ------------------------------------------------------------------

    @transaction(submit=False)
    def GetToken(self, ctx: Context, token_id: str) -> dict:  # noqa: N802
        return self._visible(ctx, get_token(ctx, token_id))

    @transaction(submit=False)
    def TokenHistory(self, ctx: Context, token_id: str) -> list:  # noqa: N802
        """Every change of a token: who, when, in which transaction (its audit trail)."""
        self._visible(ctx, get_token(ctx, token_id))
        return [
            {"tx_id": change.tx_id, "time": timestamp(change.timestamp),
             "token": self._visible(ctx, json.loads(change.value))}
            for change in ctx.stub.get_history_for_key(key(TOKEN, token_id))
        ]  # fmt: skip

    @transaction(submit=False)
    def ListTokens(self, ctx: Context, status: str, size: int, bookmark: str) -> dict:  # noqa: N802
        """A page of the tokens the caller may see, optionally of one status."""
        who = caller(ctx)
        if status and status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        if who.role == "researcher":
            index, prefix = BY_REQUESTER, [who.key]
        elif who.role in ("admin", "executor", "steward"):
            index, prefix = BY_ORG, [who.organisation]
        elif who.role == "auditor":
            index, prefix = TOKEN, []
        else:
            raise Refused(f"{who.key} has no computation tokens to see")
        page, following = paged(ctx, index, prefix, size, bookmark)
        moment = timestamp(now(ctx))
        tokens = []
        for kv in page:
            token_id = split_composite_key(kv.key)[1][-1]
            token = get_token(ctx, token_id)
            if not status or effective_status(token, moment) == status:
                tokens.append(self._visible(ctx, token))
        return {"tokens": tokens, "bookmark": following}

    # -- helpers -------------------------------------------------------------------------

    def _change(self, ctx: Context, token: dict, event: str, **extra: object) -> dict:
        """Store a token's new state and emit the event that announces it."""
        self._save(ctx, token)
        emit(ctx, event, {**_event(token), **extra})
        return token

    def _save(self, ctx: Context, token: dict, new: bool = False) -> None:
        write(ctx, key(TOKEN, token["token_id"]), token)
        if new:
            marker = b"\x00"
            ctx.stub.put_state(key(BY_REQUESTER, token["requester"], token["token_id"]), marker)
            ctx.stub.put_state(key(BY_ORG, token["data_org"], token["token_id"]), marker)
            requester_org = token["requester"].rsplit("@", 1)[1]
            if requester_org != token["data_org"]:
                ctx.stub.put_state(key(BY_ORG, requester_org, token["token_id"]), marker)

    def _expect(self, ctx: Context, token: dict, *statuses: str) -> None:
        status = effective_status(token, timestamp(now(ctx)))
        if status not in statuses:
            raise Conflict(f"token {token['token_id']} is {status}, not {' or '.join(statuses)}")

    @staticmethod
    def _still_runnable(ctx: Context, token: dict) -> None:
        """Refuse a token whose method was disabled since the request, or is not the data
        organisation's own, or whose request is dated ahead of this transaction (its expiry
        counts from a clock its requester set)."""
        method = method_for(ctx, token["method"], token["version"], token["data_org"])
        if not method["enabled"]:
            raise Conflict(f"{token['method']}@{token['version']} has been disabled")
        if parse_time(token["created_at"], "created_at") > now(ctx) + CLOCK_SKEW:
            raise Conflict(
                f"token {token['token_id']} is dated {token['created_at']}, ahead of the "
                "ledger's time; ask for it again"
            )

    def _claimed(self, ctx: Context, token_id: str) -> dict:
        token = get_token(ctx, token_id)
        executor = require(ctx, "executor", organisation=token["data_org"])
        self._expect(ctx, token, "RUNNING")
        if token["claimed_by"] != executor.key:
            raise Refused(
                f"token {token_id} was claimed by {token['claimed_by']}, not {executor.key}"
            )
        return token

    def _inputs(self, ctx: Context, inputs: list, requester: str, meta: dict) -> list[str]:
        if len(inputs) > MAX_INPUTS:
            raise Invalid(f"inputs must list at most {MAX_INPUTS} tokens")
        if len({str(token_id) for token_id in inputs}) < len(inputs):
            # Twice, its patients would weigh double: counts over inputs that differ by
            # one patient would then give that patient's label away by their parity.
            raise Invalid("inputs must name each token once")
        for token_id in inputs:
            earlier = get_token(ctx, name(str(token_id), "an input token"))
            if earlier["requester"] != requester:
                raise Refused(f"input token {token_id} belongs to another researcher")
            if earlier["data_org"] != meta["organisation"]:
                # Its output is kept by another organisation's executor, out of reach here.
                raise Invalid(
                    f"input token {token_id} was computed by {earlier['data_org']}, "
                    f"not {meta['organisation']}, which holds {meta['name']!r}"
                )
            if earlier["status"] != "DONE":
                raise Conflict(f"input token {token_id} is {earlier['status']}, not DONE")
        return [str(token_id) for token_id in inputs]

    @staticmethod
    def _request_key(ctx: Context, requester: str) -> str:
        """The state key remembering a request key's token ("" without a request key)."""
        given = ctx.stub.transient.get(REQUEST_KEY_FIELD, b"")
        if not given:
            return ""
        if len(given) > MAX_REQUEST_KEY_BYTES:
            raise Invalid(f"the request key must be at most {MAX_REQUEST_KEY_BYTES} bytes")
        return key(REQUEST_KEY, requester, hashlib.sha256(given).hexdigest())

    @staticmethod
    def _visible(ctx: Context, token: dict) -> dict:
        """The token as the caller may see it; refused if they may not see it at all."""
        who = caller(ctx)
        shown = {**token, "status": effective_status(token, timestamp(now(ctx)))}
        if who.key == token["requester"]:
            return shown
        involved = who.organisation in (token["data_org"], token["requester"].rsplit("@", 1)[1])
        if (who.role in ("admin", "executor") and involved) or who.role == "auditor":
            if shown["result"] is not None and who.role != "executor":
                shown["result"] = {k: v for k, v in shown["result"].items() if k != "encrypted"}
            return shown
        raise Refused(f"{who.key} may not see token {token['token_id']}")


def released_cohort_size(size: object, private: bool) -> int | None:
    """The cohort size a result may state on the ledger: none under differential privacy
    (its noisy count is all it releases), else a whole number (rounded data-side)."""
    if private:
        if size is not None:
            raise Invalid("result.cohort_size must be null: a DP result states no cohort size")
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Invalid("result.cohort_size must be a whole number at least 0")
    return size


def _names(values: list, argument: str) -> list[str]:
    if not isinstance(values, list):
        raise Invalid(f"{argument} must be a JSON array")
    return [text(str(value), argument, 200) for value in values]


def _event(token: dict) -> dict:
    return {
        "token_id": token["token_id"],
        "status": token["status"],
        "dataset": token["dataset"],
        "data_org": token["data_org"],
        "requester": token["requester"],
    }
