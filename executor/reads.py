"""Serving read requests: a patient's rows, sealed to the reader their consent names."""

from __future__ import annotations

import json
import logging

from cryptography import x509

from flowblock.canonical import canonical_json
from flowblock.errors import CommitError, EndorseError, FlowBlockError
from flowblock.executor.ingest import PATIENT_COLUMN, RECORD_COLUMN
from flowblock.executor.worker import Executor
from flowblock.sealing import digest, seal

log = logging.getLogger(__name__)


def process_read(executor: Executor, access_id: str) -> str:
    """Claim a read request, seal the patient's rows to the reader, complete it."""
    try:
        access = executor.ledger("access:ClaimRead", access_id, submit=True)
    except (EndorseError, CommitError) as error:
        status = getattr(error, "chaincode_status", None)
        if status == 403:  # the consent was revoked since the request
            executor.ledger(
                "access:FailRead", access_id, "the read consent was revoked", submit=True
            )
            return "FAILED"
        if isinstance(error, CommitError) or status == 409:
            return json.loads(executor.contract.evaluate("access:GetAccess", access_id))["status"]
        raise
    try:
        frame = executor.load(access["dataset"])
        patient = access["patient"].removesuffix(f"@{executor.organisation}")
        rows = frame[frame[PATIENT_COLUMN].astype(str) == patient]
        if access["record_id"]:
            rows = rows[rows[RECORD_COLUMN] == access["record_id"]]
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        plaintext = canonical_json(
            {"access_id": access_id, "patient": access["patient"], "dataset": access["dataset"],
             "rows": [{k: _plain(v) for k, v in row.items()} for row in records]}
        )  # fmt: skip
        reader = x509.load_pem_x509_certificate(access["reader_certificate"].encode())
        executor.ledger(
            "access:CompleteRead",
            access_id,
            json.dumps(
                {
                    "encrypted": seal(plaintext, reader.public_key(), access_id),
                    "result_hash": digest(plaintext),
                    "records": len(records),
                }
            ),
            submit=True,
        )
        return "DONE"
    except FlowBlockError as refusal:
        reason = str(refusal)
    except Exception:
        log.exception("read request %s failed in the executor", access_id)
        reason = "the read failed on the data side; its organisation has the details."
    executor.ledger("access:FailRead", access_id, reason[:480], submit=True)
    return "FAILED"


def _plain(value):
    return value.item() if hasattr(value, "item") else value
