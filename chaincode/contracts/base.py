"""What every FlowBlock contract shares: who is calling, keys, JSON state, refusals.

Rules are enforced here, in chaincode, whatever a client sends: each transaction
checks the caller's role and organisation from their certificate, validates every
argument, and refuses with a status and one sentence. A refusal writes nothing, since
an error response is never endorsed. State is canonical JSON under composite keys,
and the transaction timestamp is the only clock.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from flowblock.canonical import canonical_json, nested_deeper_than
from flowblock.chaincode import ChaincodeError, Context, Contract, create_composite_key
from flowblock.vocabulary import (
    MAX_FAILURE_MESSAGE,
    MAX_FAILURE_RULE,
    MAX_JSON_DEPTH,
    ChaincodeStatus,
    Event,
    FailureKind,
)

#: Largest JSON argument a transaction accepts; blocks should stay well under 2 MB.
MAX_ARGUMENT_BYTES = 512 * 1024
#: Most records one page of a listing returns.
MAX_PAGE_SIZE = 10_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Refused(ChaincodeError):
    """The caller may not do this (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ChaincodeStatus.FORBIDDEN)


class NotFound(ChaincodeError):
    """What was named does not exist (404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ChaincodeStatus.NOT_FOUND)


class Invalid(ChaincodeError):
    """An argument is malformed (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ChaincodeStatus.BAD_REQUEST)


class Conflict(ChaincodeError):
    """The state does not allow this now (409): a token already claimed, say."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ChaincodeStatus.CONFLICT)


class OutOfBudget(ChaincodeError):
    """Too little differential-privacy budget is left for what is asked (402)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ChaincodeStatus.BUDGET_EXHAUSTED)


@dataclass(frozen=True)
class Caller:
    """The transaction's creator as FlowBlock sees them."""

    name: str
    organisation: str
    role: str

    @property
    def key(self) -> str:
        """How a person is named in grants, budgets and tokens: ``name@Organisation``."""
        return f"{self.name}@{self.organisation}"


def caller(ctx: Context) -> Caller:
    """The transaction's creator. A patient is named by their id at their organisation,
    which their certificate does not carry (its name is a pseudonym): their
    organisation's enrolment, in its private collection, says it (read once)."""
    if "caller" not in ctx.state:
        who = _certified(ctx)
        if who.role == "patient":
            # Imported here: the private collection's module builds on this one.
            from flowblock.chaincode.contracts.private import enrolled_patient

            who = Caller(enrolled_patient(ctx, who.name, who.organisation), who.organisation,
                         who.role)  # fmt: skip
        ctx.state["caller"] = who
    return ctx.state["caller"]


def _certified(ctx: Context) -> Caller:
    """The creator as their certificate names them."""
    identity = ctx.client_identity
    return Caller(identity.name, identity.msp_id.removesuffix("MSP"), identity.role or "")


def require(ctx: Context, *roles: str, organisation: str | None = None) -> Caller:
    """The caller, if their role is one of ``roles`` (and they belong to ``organisation``)."""
    certified = _certified(ctx)
    if certified.role not in roles:
        raise Refused(
            f"this needs the role {' or '.join(roles)}; {certified.key} is a "
            f"{certified.role or 'nobody'}"
        )
    if organisation is not None and certified.organisation != organisation:
        raise Refused(f"this is for {organisation}'s {' or '.join(roles)}, not {certified.key}")
    return caller(ctx)


def key(kind: str, *parts: str) -> str:
    """The one way state keys are built: a composite key of ``kind`` and ``parts``."""
    return create_composite_key(kind, list(parts))


def read(ctx: Context, state_key: str) -> dict | None:
    data = ctx.stub.get_state(state_key)
    return None if data is None else json.loads(data)


def write(ctx: Context, state_key: str, value: Any) -> None:
    ctx.stub.put_state(state_key, canonical_json(value))


def emit(ctx: Context, event: Event, payload: dict) -> None:
    """Announce a change; events are named once, in flowblock.vocabulary."""
    ctx.stub.set_event(str(Event(event)), canonical_json(payload))


def now(ctx: Context) -> dt.datetime:
    return ctx.stub.timestamp


def timestamp(moment: dt.datetime) -> str:
    """Times in state are ISO 8601 UTC strings to the second: deterministic and sortable."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, argument: str) -> dt.datetime:
    """A date (``2027-12-31``, meaning through that day) or an ISO 8601 time, in UTC."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise Invalid(f"{argument} must be a date like 2027-12-31 or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def name(value: str, argument: str) -> str:
    if not _NAME.match(value):
        raise Invalid(
            f"{argument} must be 1 to 128 letters, digits or ._@:+- starting with a letter "
            f"or digit, got {value[:40]!r}"
        )
    return value


def sha256_hex(value: str, argument: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise Invalid(f"{argument} must be a SHA-256 digest as 64 lowercase hex digits")
    return value


def text(value: str, argument: str, limit: int = 500) -> str:
    if not value.strip():
        raise Invalid(f"{argument} must not be empty")
    if len(value) > limit:
        raise Invalid(f"{argument} must be at most {limit} characters")
    return value


def json_argument(
    value: str, argument: str, kind: type = dict, limit: int = MAX_ARGUMENT_BYTES
) -> Any:
    """A JSON argument of the expected kind, no larger than ``limit`` bytes and nested at
    most MAX_JSON_DEPTH levels (the parser recurses: one nested deeper than Python's
    recursion allows stops it with a RecursionError, refused here in the same words)."""
    if len(value.encode()) > limit:
        raise Invalid(f"{argument} is larger than {limit // 1024} KiB")
    try:
        decoded = json.loads(value, parse_constant=_no_constant)
    except RecursionError:
        raise _too_deep(argument) from None
    except ValueError:
        raise Invalid(f"{argument} must be valid JSON (no NaN or Infinity)") from None
    if nested_deeper_than(decoded):
        raise _too_deep(argument)
    if not isinstance(decoded, kind):
        expected = {dict: "a JSON object", list: "a JSON array"}.get(kind, kind.__name__)
        raise Invalid(f"{argument} must be {expected}")
    return decoded


def transient_json(
    ctx: Context, field: str, argument: str, kind: type = dict, limit: int = MAX_ARGUMENT_BYTES
) -> Any:
    """The JSON value given in the transient field ``field`` (what names a patient never
    travels among a proposal's arguments, which the block keeps), checked as
    :func:`json_argument` checks ``argument``."""
    raw = ctx.stub.transient.get(field)
    if raw is None:
        raise Invalid(f"this is given in the transient field {field!r}, never as arguments")
    return json_argument(raw.decode("utf-8", "replace"), argument, kind, limit)


def transient_argument(ctx: Context, field: str, fields: tuple[str, ...]) -> dict:
    """The JSON object in the transient field ``field``, with exactly ``fields`` as text."""
    spec = transient_json(ctx, field, f"the transient field {field!r}")
    if set(spec) != set(fields) or not all(isinstance(spec[f], str) for f in fields):
        raise Invalid(f"the transient field {field!r} must give {', '.join(fields)}, as text")
    return spec


def failure_argument(value: str) -> dict:
    """A failure as the data side reports it (flowblock.vocabulary.Failure), checked: a
    known kind, a rule for a disclosure refusal, the status of a refusal or 0, a message.
    Clients decide by its kind and rule; the message is for people."""
    spec = json_argument(value, "failure", limit=4 * 1024)
    if set(spec) - {"kind", "rule", "status", "message"}:
        raise Invalid("failure must be made of kind, rule, status and message")
    kinds = [kind.value for kind in FailureKind]
    kind = spec.get("kind")
    if kind not in kinds:
        raise Invalid(f"failure.kind must be one of {', '.join(kinds)}")
    rule = spec.get("rule", "")
    if not isinstance(rule, str) or len(rule) > MAX_FAILURE_RULE:
        raise Invalid(f"failure.rule must be text of at most {MAX_FAILURE_RULE} characters")
    if (kind == FailureKind.DISCLOSURE_REFUSED) != bool(rule.strip()):
        raise Invalid("failure.rule must name the disclosure rule, for a disclosure refusal only")
    status = spec.get("status", 0)
    if (
        not isinstance(status, int)
        or isinstance(status, bool)
        or not (status == 0 or 400 <= status <= 599)
    ):
        raise Invalid("failure.status must be 0 or the status of a refusal, 400 to 599")
    message = spec.get("message")
    if not isinstance(message, str):
        raise Invalid("failure.message must be text")
    text(message, "failure.message", MAX_FAILURE_MESSAGE)
    return {"kind": kind, "rule": rule, "status": status, "message": message}


def _too_deep(argument: str) -> Invalid:
    return Invalid(f"{argument} is nested more than {MAX_JSON_DEPTH} levels deep")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def page_size(value: int) -> int:
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise Invalid(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    return value


def paged(ctx: Context, kind: str, parts: list[str], size: int, bookmark: str):
    """One page (at most ``size``, checked) of the keys of ``kind`` under ``parts``."""
    return ctx.stub.get_state_by_partial_composite_key_with_pagination(
        kind, parts, page_size(size), bookmark
    )


class FlowBlockContract(Contract):
    """Base of FlowBlock's contracts."""

    def before_transaction(self, ctx: Context) -> None:
        # Our transactions never read what they wrote (a simulation cannot), so all their
        # writes can travel to the peer in one message at the end where the peer allows.
        ctx.stub.start_write_batch()
