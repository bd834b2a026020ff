"""Canonical JSON: the one way FlowBlock turns a value into bytes for the ledger.

Endorsing peers compare read/write sets byte for byte, so two peers serialising the
same value must produce the same bytes: keys sorted, no insignificant whitespace,
UTF-8, and no floats left to chance (NaN and infinities are refused).

Nesting is measured here too, without recursion: Python's JSON parser, serialiser and
our validators recurse, so a value nested thousands of levels deep would stop them with
a RecursionError instead of a sentence. Arguments may nest ``MAX_JSON_DEPTH`` levels.
"""

from __future__ import annotations

import json
from typing import Any

from flowblock.errors import InvalidArgument
from flowblock.vocabulary import MAX_JSON_DEPTH


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``; raises ValueError for NaN or infinity, and
    InvalidArgument (a ValueError too) for a value nested too deeply to serialise."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except RecursionError:
        raise too_deep("a value written as JSON") from None
    return text.encode("utf-8")


def nested_deeper_than(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether lists and dicts (tuples too) nest in ``value`` more than ``limit`` levels:
    ``1`` is 0 deep, ``[]`` 1, ``[[1]]`` 2. Iterative, and it stops at the first path
    past the limit, so a value millions deep (or one that contains itself) costs little."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def too_deep(argument: str, limit: int = MAX_JSON_DEPTH) -> InvalidArgument:
    """The error for ``argument`` nested more than ``limit`` levels: one sentence."""
    return InvalidArgument(argument, f"nested at most {limit} levels deep")
