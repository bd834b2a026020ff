"""Cohorts in the data organisation's private collection: parts, receipts, openings.

Which patients a computation used is known to the data organisation alone. The
executor hands each part of the cohort to its own peer in the transient field
``cohort`` (never in the proposal's arguments, which go into the block); the chaincode
checks the part against the hash the completed token committed to and stores it with
``PutPrivateData`` in ``_implicit_org_<data organisation>``. Blocks hold the part's
hash only (see :mod:`flowblock.cohorts`). A patient's receipts and an auditor's
opening are read back on the organisation's own peer; any other peer refuses.
"""

from __future__ import annotations

import bisect
import json
import re

from flowblock.canonical import canonical_json
from flowblock.chaincode import Context, create_composite_key, split_composite_key
from flowblock.chaincode.contracts.base import Conflict, Invalid, NotFound, json_argument
from flowblock.chaincode.contracts.private import collection_of
from flowblock.cohorts import MAX_PARTS, PATIENTS_PER_PART, TRANSIENT_FIELD, commitment, part_hash

COHORT = "cohort"
_HEX = re.compile(r"^[0-9a-f]{64}$")
#: What a receipt tells a patient about a computation that used their data.
RECEIPT_FIELDS = (
    "token_id",
    "dataset",
    "method",
    "version",
    "requester",
    "purpose",
    "completed_at",
)


def part_key(token_id: str, index: int) -> str:
    return create_composite_key(COHORT, [token_id, f"{index:06d}"])


def committed_parts(token: dict) -> list[str]:
    """The part hashes the completed token committed to."""
    return list((token.get("result") or {}).get("cohort_parts") or [])


def check_commitment(spec: dict) -> tuple[str, list[str]]:
    """A result's cohort commitment and part hashes, checked to agree (Complete)."""
    parts = spec.get("cohort_parts")
    if (
        not isinstance(parts, list)
        or not 1 <= len(parts) <= MAX_PARTS
        or not all(isinstance(h, str) and _HEX.match(h) for h in parts)
    ):
        raise Invalid(
            f"result.cohort_parts must list 1 to {MAX_PARTS} SHA-256 hashes, lowercase hex"
        )
    committed = spec.get("cohort_commitment")
    if committed != commitment(parts):
        raise Invalid("result.cohort_commitment must be the commitment to result.cohort_parts")
    return committed, parts


def record_part(ctx: Context, token: dict) -> int:
    """Store the part of the token's cohort given in the transient field; its index."""
    raw = ctx.stub.transient.get(TRANSIENT_FIELD)
    if not raw:
        raise Invalid(
            f"the cohort part must be given in the transient field {TRANSIENT_FIELD!r}, "
            "never as an argument"
        )
    part = json_argument(raw.decode("utf-8", "replace"), "the cohort part")
    index, patients = part.get("part"), part.get("patients")
    hashes = committed_parts(token)
    if part.get("token_id") != token["token_id"] or not isinstance(index, int):
        raise Invalid("the cohort part must name its token and its index")
    if not 0 <= index < len(hashes) or part.get("parts") != len(hashes):
        raise Invalid(f"the cohort of token {token['token_id']} has {len(hashes)} part(s)")
    if not isinstance(patients, list) or len(patients) > PATIENTS_PER_PART:
        raise Invalid(f"a cohort part lists at most {PATIENTS_PER_PART} patients")
    if raw != canonical_json(part) or part_hash(raw) != hashes[index]:
        raise Conflict(
            f"part {index} of the cohort is not the one token {token['token_id']} committed to"
        )
    ctx.stub.put_private_data(
        collection_of(token["data_org"]), part_key(token["token_id"], index), raw
    )
    return index


def opening(ctx: Context, token: dict) -> dict:
    """The recorded parts of a token's cohort, as the data organisation's auditor sees them."""
    collection = collection_of(token["data_org"])
    hashes = committed_parts(token)
    parts = [
        ctx.stub.get_private_data(collection, part_key(token["token_id"], i))
        for i in range(len(hashes))
    ]
    if not hashes or any(part is None for part in parts):
        raise NotFound(f"the cohort of token {token['token_id']} is not all recorded yet")
    return {
        "token_id": token["token_id"],
        "cohort_commitment": token["result"]["cohort_commitment"],
        "parts": [part.decode() for part in parts],
    }


def receipts_of(
    ctx: Context, patient: str, organisation: str, size: int, bookmark: str, token_of
) -> tuple[list[dict], str]:
    """A page of the tokens whose cohort holds ``patient``, after token ``bookmark``.

    The parts are scanned on the organisation's own peer (which alone holds them)."""
    collection = collection_of(organisation)
    found: list[dict] = []
    for kv in ctx.stub.get_private_data_by_partial_composite_key(collection, COHORT, []):
        token_id = split_composite_key(kv.key)[1][0]
        if bookmark and token_id <= bookmark:
            continue
        patients = json.loads(kv.value)["patients"]
        at = bisect.bisect_left(patients, patient)
        if at < len(patients) and patients[at] == patient:
            if len(found) == size:
                return found, found[-1]["token_id"]
            token = token_of(ctx, token_id)
            found.append({field: token[field] for field in RECEIPT_FIELDS})
    return found, ""
