"""The words both sides of the ledger share: event names, statuses, limits, failure kinds.

The chaincode writes them and the executor, the client and the front ends read them, so
each is named here once, in the core every part may import. A side decides from these
names and fields, never from the words of a message: a message is for people, and its
wording may change without anything else changing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import IntEnum, StrEnum
from typing import Any


class Event(StrEnum):
    """The chaincode events: every change of state emits one, and the data side follows
    them to learn of new work."""

    DATASET_REGISTERED = "DatasetRegistered"
    RECORDS_REGISTERED = "RecordsRegistered"
    RECORD_DELETED = "RecordDeleted"

    CONSENT_GRANTED = "ConsentGranted"
    CONSENT_REVOKED = "ConsentRevoked"
    USAGE_RECORDED = "UsageRecorded"

    METHOD_PUBLISHED = "MethodPublished"
    METHOD_CHANGED = "MethodChanged"

    RULES_SET = "RulesSet"
    BUDGET_GRANTED = "BudgetGranted"

    COMPUTATION_REQUESTED = "ComputationRequested"
    COMPUTATION_APPROVED = "ComputationApproved"
    COMPUTATION_DENIED = "ComputationDenied"
    COMPUTATION_CLAIMED = "ComputationClaimed"
    COMPUTATION_PROGRESS = "ComputationProgress"
    COMPUTATION_COMPLETED = "ComputationCompleted"
    COMPUTATION_FAILED = "ComputationFailed"

    READ_REQUESTED = "ReadRequested"
    READ_CLAIMED = "ReadClaimed"
    READ_COMPLETED = "ReadCompleted"
    READ_FAILED = "ReadFailed"
    WRITE_REQUESTED = "WriteRequested"
    WRITE_CLAIMED = "WriteClaimed"
    WRITE_COMPLETED = "WriteCompleted"
    WRITE_FAILED = "WriteFailed"
    EXECUTOR_CERTIFICATE_PUBLISHED = "ExecutorCertificatePublished"


class ChaincodeStatus(IntEnum):
    """The statuses the chaincode answers with; 400 and above refuse the transaction, and
    a client tells its refusals apart by them."""

    OK = 200
    BAD_REQUEST = 400
    #: Too little differential-privacy budget is left for what is asked.
    BUDGET_EXHAUSTED = 402
    FORBIDDEN = 403
    NOT_FOUND = 404
    #: The state does not allow it now: a token already claimed, a request already ended.
    CONFLICT = 409
    INTERNAL_ERROR = 500


#: The kinds of output a method may declare (``disclosure_class`` in the catalogue): each
#: names the rules the data organisation's disclosure policy applies to its results
#: (``flowblock.executor.disclosure.classes`` says which).
DISCLOSURE_CLASSES = (
    "count_table", "histogram", "crosstab", "statistics", "model", "chart", "labels"
)  # fmt: skip

#: The transient field of a Request that makes asking again safe (``Client.compute``'s
#: ``request_key``), and its longest value.
REQUEST_KEY_FIELD, MAX_REQUEST_KEY_BYTES = "request_key", 200
#: Transient fields: what names a patient travels here, never among a proposal's
#: arguments (which go into the block). A grant's or revocation's fields; a read's or
#: write's request; the secret of an organisation's private collection (its executor's,
#: given once).
CONSENT_FIELD, ACCESS_FIELD, SECRET_FIELD = "consent", "access", "secret"
#: A batch of records to register, or one to delete (a steward's).
RECORDS_FIELD = "records"
#: Patients' certificates to enrol: pseudonym → patient id (an admin's or steward's).
ENROL_FIELD = "patients"
#: The most records one write may add or correct.
MAX_WRITE_RECORDS = 1_000
#: A patient's rows, or an X-ray or two, sealed; inside one proposal, with room to spare.
MAX_SEALED_BYTES = 2 * 1024 * 1024
#: The largest signed proposal (arguments, transient data, headers) a gateway takes: a
#: sealed read's result with room to spare. Bigger ones are refused in one sentence before
#: the gateway forwards anything.
MAX_PROPOSAL_BYTES = MAX_SEALED_BYTES + 512 * 1024
#: The largest gRPC message on a transaction's way: the gateway's requests and answers, and
#: each message on the peer's one stream to a chaincode. A proposal carries its arguments
#: twice to the chaincode, and an endorsed transaction holds them with the writes and the
#: answer they led to, so this leaves an accepted proposal room; a message someone composes
#: beyond it fails that one transaction, never a stream other transactions share.
MAX_MESSAGE_BYTES = 8 * MAX_PROPOSAL_BYTES
#: The longest message a failure carries (the chaincode refuses longer ones).
MAX_FAILURE_MESSAGE = 500
#: The longest name of a disclosure rule a failure carries.
MAX_FAILURE_RULE = 80
#: The deepest a JSON argument may nest lists and objects (``[[1]]`` is 2 deep). Parsers,
#: serialisers and validators recurse, and Python's recursion stops near 1,000 levels with
#: an error no one meant to raise; real arguments nest a few levels.
MAX_JSON_DEPTH = 64


class FailureKind(StrEnum):
    """Why the data side ended a token or a request without a result."""

    #: It could not or would not compute (or serve) it; the message says why.
    COMPUTATION_FAILED = "computation_failed"
    #: Disclosure control withheld the result; the failure names the rule.
    DISCLOSURE_REFUSED = "disclosure_refused"
    #: The differential-privacy budget left does not cover the token.
    BUDGET_EXHAUSTED = "budget_exhausted"
    #: The consent behind a read or write was revoked before it was served.
    CONSENT_REVOKED = "consent_revoked"


@dataclass(frozen=True)
class Failure:
    """How a token or request failed, as the chaincode stores it (``failure`` on the token).

    ``kind`` is what clients decide by; ``rule`` names the disclosure rule that refused
    (empty otherwise); ``status`` is the chaincode status of the refusal that caused the
    failure, 0 when none did; ``message`` is one sentence for people.
    """

    kind: FailureKind
    message: str
    rule: str = ""
    status: int = 0

    def __post_init__(self) -> None:
        # The ledger keeps at most MAX_FAILURE_MESSAGE characters, and never none.
        message = (self.message.strip() or "no reason given")[:MAX_FAILURE_MESSAGE]
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "kind", FailureKind(self.kind))
        object.__setattr__(self, "status", int(self.status))

    @classmethod
    def refused(cls, status: int | None, message: str) -> Failure:
        """The failure a chaincode refusal (``status``, ``message``) causes: out of budget
        for a 402, a failed computation otherwise."""
        kind = (
            FailureKind.BUDGET_EXHAUSTED
            if status == ChaincodeStatus.BUDGET_EXHAUSTED
            else FailureKind.COMPUTATION_FAILED
        )
        return cls(kind, message, status=status or 0)

    @classmethod
    def of(cls, stored: Any) -> Failure | None:
        """The failure a token or request carries, or None (one that has not failed, or
        failed before failures were typed). A kind this version does not know reads as a
        failed computation."""
        if not isinstance(stored, dict) or not isinstance(stored.get("message"), str):
            return None
        try:
            kind = FailureKind(stored.get("kind"))
        except ValueError:
            kind = FailureKind.COMPUTATION_FAILED
        status = stored.get("status")
        return cls(
            kind,
            stored["message"],
            rule=str(stored.get("rule") or ""),
            status=status if isinstance(status, int) and not isinstance(status, bool) else 0,
        )

    def to_json(self) -> str:
        """The failure as the chaincode's ``Fail`` functions take it."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
