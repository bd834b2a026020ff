"""Cohort commitments: how the ledger binds a computation to its patients without naming them.

Every organisation on the channel reads every block, so a cohort's members never go
there. The data side splits the cohort into *parts* (canonical JSON: the token, a
random salt, the part's place and its sorted patients); the parts go, as private data,
into the data organisation's own collection, where only its peers hold them and the
blocks hold only their SHA-256. The token's result records those hashes and the
*commitment*, the hash of their list. So:

- nobody without a part can test a guessed cohort: each part carries 256 random bits;
- any peer checks that a recorded part is one the result committed to, from its hash;
- the organisation's auditor, who may read the parts, checks the commitment whole.

What stays visible is the number of parts, one per ``PATIENTS_PER_PART`` patients: it
tells whether a cohort is larger than a multiple of 5,000, never its size.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from flowblock.canonical import canonical_json

#: Patients per part: one part is one transaction, well under a block's preferred size.
PATIENTS_PER_PART = 5_000
#: Most parts a cohort may have (five million patients).
MAX_PARTS = 1_000
SALT_HEX_DIGITS = 64
#: The transient field a part travels in to the data organisation's peer.
TRANSIENT_FIELD = "cohort"

__all__ = [
    "MAX_PARTS",
    "PATIENTS_PER_PART",
    "TRANSIENT_FIELD",
    "cohort_parts",
    "commitment",
    "new_salt",
    "part_hash",
]


def new_salt() -> str:
    """256 random bits, hex: what makes a cohort's parts impossible to guess."""
    return secrets.token_hex(SALT_HEX_DIGITS // 2)


def cohort_parts(token_id: str, salt: str, patients: Iterable[str]) -> list[bytes]:
    """The cohort of ``token_id`` as the parts the private collection stores, in order.

    An empty cohort still has one part, so that a part's existence tells nothing."""
    ordered = sorted(set(patients))
    chunks = [
        ordered[start : start + PATIENTS_PER_PART]
        for start in range(0, len(ordered), PATIENTS_PER_PART)
    ] or [[]]
    return [
        canonical_json(
            {
                "token_id": token_id,
                "salt": salt,
                "part": index,
                "parts": len(chunks),
                "patients": chunk,
            }
        )
        for index, chunk in enumerate(chunks)
    ]


def part_hash(part: bytes) -> str:
    """A part's hash, hex: the SHA-256 Fabric records in the block for a private value."""
    return hashlib.sha256(part).hexdigest()


def commitment(part_hashes: list[str]) -> str:
    """The commitment to a cohort: the hash of its parts' hashes, in order."""
    return hashlib.sha256(canonical_json({"parts": list(part_hashes)})).hexdigest()
