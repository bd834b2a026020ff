"""Listings that come a page at a time, as FlowBlock's chaincode returns them.

A listing function takes a page size and a bookmark and returns its items under one
key with the ``bookmark`` of the next page, empty after the last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def all_pages(fetch: Callable[[str], dict], items: str) -> list[Any]:
    """Every item of a listing: ``fetch(bookmark)`` returns one page, from bookmark ""."""
    found: list[Any] = []
    bookmark = ""
    while True:
        page = fetch(bookmark)
        found += page[items]
        bookmark = page["bookmark"]
        if not bookmark:
            return found
