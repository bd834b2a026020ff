"""An organisation's private state: what names patients, kept in its implicit collection.

Fabric's private data keeps values on the organisation's own peers, but every write's
key hash and value hash go into the block for all organisations to read. A key or a
value that can be guessed (a patient id; a grant that says "compute, for research, to
University") could be tested against those hashes, so :class:`PrivateState`:

- hides every part of a key that could name a patient behind an HMAC with the
  collection's secret (:func:`set_up`, once, from the transient field ``secret``);
- salts every value with an HMAC of the secret, the transaction and the key.

Without the secret nobody can test a guess; with it (the organisation's own peers) the
chaincode finds a patient's entries by a point read. Keys are simple keys joined by
``|`` (no name FlowBlock accepts holds one), so a page can start after a bookmark.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flowblock.canonical import canonical_json
from flowblock.chaincode import Context
from flowblock.chaincode.contracts.base import Conflict, Invalid, NotFound, Refused, page_size
from flowblock.chaincode.stub import PeerError, implicit_collection
from flowblock.vocabulary import SECRET_FIELD

ENROLMENT = "enrolment"
SECRET_KEY = "secret"  # noqa: S105 - where the secret is, not it
SEPARATOR = "|"
#: The byte after SEPARATOR: a range [prefix|, prefix}) holds every key under prefix.
_PAST = chr(ord(SEPARATOR) + 1)
#: Appended to a key: the least key after it (no key holds a control character).
_NEXT = "\x01"
_SALT = "salt"


def collection_of(organisation: str) -> str:
    """The organisation's implicit private data collection."""
    return implicit_collection(f"{organisation}MSP")


def set_up(ctx: Context, organisation: str) -> None:
    """Store the collection's secret from the transient field; refused if it has one (a
    transaction that wrote nothing would need every organisation's endorsement)."""
    collection = collection_of(organisation)
    if ctx.stub.get_private_data(collection, SECRET_KEY) is not None:
        raise Conflict(f"{organisation}'s private collection is set up already")
    secret = ctx.stub.transient.get(SECRET_FIELD, b"")
    if len(secret) < 32:
        raise Invalid(
            f"the collection's secret must be at least 32 random bytes in the transient "
            f"field {SECRET_FIELD!r}"
        )
    ctx.stub.put_private_data(collection, SECRET_KEY, secret)


def enrolled_patient(ctx: Context, pseudonym: str, organisation: str) -> str:
    """The id of the patient the certificate named ``pseudonym`` enrols at
    ``organisation``, as it recorded it (``consent:Enrol``)."""
    state = PrivateState(ctx, organisation)
    found = state.read(state.key(ENROLMENT, pseudonym))
    if found is None:
        raise Refused(
            f"{pseudonym}@{organisation} is not enrolled as a patient of {organisation}; "
            "the organisation enrols a patient's certificate when it issues it"
        )
    return found["patient"].removesuffix(f"@{organisation}")


class PrivateState:
    """The private collection of ``organisation``, read and written as JSON objects."""

    def __init__(self, ctx: Context, organisation: str) -> None:
        self.ctx = ctx
        self.organisation = organisation
        self.collection = collection_of(organisation)

    @contextmanager
    def _held(self) -> Iterator[None]:
        """A read the peer refuses (it is not one of the organisation's, so it holds none
        of the collection) is the caller's mistake, said in one sentence."""
        try:
            yield
        except PeerError:
            raise Refused(
                f"only {self.organisation}'s peers hold its private data; ask one of them"
            ) from None

    @property
    def secret(self) -> bytes:
        """The collection's secret, read once a transaction however many states use it."""
        cached = ("secret", self.collection)
        if cached not in self.ctx.state:
            with self._held():
                found = self.ctx.stub.get_private_data(self.collection, SECRET_KEY)
            if not found:
                raise Conflict(
                    f"{self.organisation} has not set up its private collection yet; its "
                    "executor does when it starts"
                )
            self.ctx.state[cached] = found
        return self.ctx.state[cached]

    def hide(self, part: str) -> str:
        """A key part that names someone, as nobody without the secret can test."""
        return hmac.new(self.secret, part.encode(), hashlib.sha256).hexdigest()[:40]

    def key(self, kind: str, *parts: str) -> str:
        """``kind|part|…``: a part that names someone is given as :meth:`hide` made it."""
        return SEPARATOR.join([kind, *parts])

    def read(self, state_key: str) -> dict | None:
        with self._held():
            found = self.ctx.stub.get_private_data(self.collection, state_key)
        return _unsalted(found)

    def entry(self, state_key: str, missing: str, history: bool = False) -> dict:
        """An entry that keeps its own changes under ``history`` (a private value has no
        history in Fabric), without them unless asked; NotFound(``missing``) if absent."""
        found = self.read(state_key)
        if found is None:
            raise NotFound(missing)
        if not history:
            found.pop("history")
        return found

    def read_many(self, keys: list[str]) -> list[dict | None]:
        """Several entries at once (None where absent)."""
        with self._held():
            found = self.ctx.stub.get_private_data_multiple(self.collection, keys)
        return [_unsalted(raw) for raw in found]

    def write(self, state_key: str, value: dict[str, Any]) -> None:
        salt = hmac.new(
            self.secret, f"{self.ctx.stub.tx_id}{SEPARATOR}{state_key}".encode(), hashlib.sha256
        ).hexdigest()
        self.ctx.stub.put_private_data(
            self.collection, state_key, canonical_json({**value, _SALT: salt})
        )

    def delete(self, state_key: str) -> None:
        self.ctx.stub.del_private_data(self.collection, state_key)

    def scan(self, prefix: str, after: str = "") -> Iterator[tuple[str, dict]]:
        """Every entry under ``prefix`` (after the key ``after``) in key order; for queries
        only: Fabric refuses a private range query in a transaction that writes."""
        start = after + _NEXT if after else prefix + SEPARATOR
        with self._held():
            found = self.ctx.stub.get_private_data_by_range(self.collection, start, prefix + _PAST)
            for kv in found:
                yield kv.key, _unsalted(kv.value)

    def page(self, prefix: str, size: int, bookmark: str) -> tuple[list[tuple[str, dict]], str]:
        """At most ``size`` entries under ``prefix`` after the key ``bookmark``, and the
        bookmark of the next page ("" after the last)."""
        size = page_size(size)
        if bookmark and not bookmark.startswith(prefix + SEPARATOR):
            raise Invalid("bookmark must be one a previous page returned")
        found: list[tuple[str, dict]] = []
        for entry in self.scan(prefix, bookmark):
            if len(found) == size:
                return found, found[-1][0]
            found.append(entry)
        return found, ""


def _unsalted(raw: bytes | None) -> dict | None:
    """A stored value as it was written, without its salt (None if absent)."""
    if raw is None:
        return None
    value = json.loads(raw)
    value.pop(_SALT, None)
    return value
