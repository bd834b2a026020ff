"""Serving read requests: a patient's rows, sealed to the reader their consent names.

A record of an images dataset is read as its metadata and its image (base64).

Claiming and serving a request are shared with writes (:mod:`flowblock.executor.writes`).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

from cryptography import x509

from flowblock.canonical import canonical_json
from flowblock.errors import CommitError, EndorseError, FlowBlockError
from flowblock.executor.algorithms.base import plain_records
from flowblock.executor.images import HASH_COLUMN, OBJECT_COLUMN
from flowblock.executor.worker import Executor
from flowblock.sealing import digest, seal
from flowblock.vocabulary import (
    ACCESS_FIELD,
    MAX_SEALED_BYTES,
    ChaincodeStatus,
    Failure,
    FailureKind,
)

log = logging.getLogger(__name__)


def serve(executor: Executor, kind: str, access_id: str, work: Callable[[dict], None]) -> str:
    """Claim a read or write request (``kind`` "Read" / "Write") and do its ``work``.

    Returns the request's status: DONE, or FAILED with a typed failure on the ledger (a
    revoked consent, a refusal, or a failure whose details stay data-side); one
    claimed by another executor is theirs, and its status is returned as it stands. One
    this executor claimed before it stopped (a task delivered again) is served again:
    the work is the same each time, and the ledger completes a request once.
    """
    try:
        executor.private(f"access:Claim{kind}", access_id)
        access = executor.access(access_id)  # the answer says only its state
    except (EndorseError, CommitError) as error:
        status = getattr(error, "chaincode_status", None)
        if status == ChaincodeStatus.FORBIDDEN:  # the consent was revoked since the request
            revoked = f"the {kind.lower()} consent was revoked"
            failure = Failure(FailureKind.CONSENT_REVOKED, revoked, status=status)
            return _fail(executor, kind, access_id, failure)
        if not (isinstance(error, CommitError) or status == ChaincodeStatus.CONFLICT):
            raise
        access = executor.access(access_id)
        if access["status"] != "RUNNING" or access["claimed_by"] != executor.identity.key:
            return access["status"]
    try:
        work(access)
        return "DONE"
    except EndorseError as refusal:
        failure = Failure.refused(refusal.chaincode_status, refusal.chaincode_message)
    except FlowBlockError as refusal:
        failure = Failure(FailureKind.COMPUTATION_FAILED, str(refusal))
    except Exception:
        log.exception("%s request %s failed in the executor", kind.lower(), access_id)
        failure = Failure(
            FailureKind.COMPUTATION_FAILED,
            f"the {kind.lower()} failed on the data side; its organisation has the details.",
        )
    return _fail(executor, kind, access_id, failure)


def _fail(executor: Executor, kind: str, access_id: str, failure: Failure) -> str:
    return executor.fail_unless_ended(
        f"access:Fail{kind}", lambda: executor.access(access_id)["status"], access_id, failure,
        private=True,
    )  # fmt: skip


def process_read(executor: Executor, access_id: str) -> str:
    """Claim a read request, seal the patient's rows to the reader, complete it."""
    return serve(executor, "Read", access_id, lambda access: _serve(executor, access))


def _serve(executor: Executor, access: dict) -> None:
    access_id = access["access_id"]
    # The request's one patient, narrowed to the record its consent covers (if one).
    granted = [access["record_id"]] if access["record_id"] else None
    cohort = {access["patient"]: granted}
    rows = executor.datasets.cohort_rows(access["dataset"], cohort).frame
    if OBJECT_COLUMN in rows.columns:  # an images dataset: each record is its image
        images = executor.datasets.images_of(rows)
        rows = rows.drop(columns=[OBJECT_COLUMN, HASH_COLUMN])
        rows = rows.assign(image_base64=[base64.b64encode(image).decode() for image in images])
    records = plain_records(rows)
    plaintext = canonical_json(
        {"access_id": access_id, "patient": access["patient"], "dataset": access["dataset"],
         "rows": records}
    )  # fmt: skip
    reader = x509.load_pem_x509_certificate(access["reader_certificate"].encode())
    sealed = seal(plaintext, reader.public_key(), access_id)
    if len(sealed) > MAX_SEALED_BYTES:
        raise FlowBlockError(
            f"the patient's records are {len(sealed) / 2**20:.1f} MiB sealed, more than one "
            f"read carries ({MAX_SEALED_BYTES / 2**20:.0f} MiB); ask for a single record."
        )
    result = {"encrypted": sealed, "result_hash": digest(plaintext), "records": len(records)}
    executor.private("access:CompleteRead", access_id, transient={ACCESS_FIELD: json.dumps(result)})
