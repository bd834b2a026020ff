"""Canonical JSON: the one way FlowBlock turns a value into bytes for the ledger.

Endorsing peers compare read/write sets byte for byte, so two peers serialising the
same value must produce the same bytes: keys sorted, no insignificant whitespace,
UTF-8, and no floats left to chance (NaN and infinities are refused).
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``; raises ValueError for NaN or infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
