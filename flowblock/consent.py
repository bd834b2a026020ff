"""``client.consent``: a patient's grants and receipts, from any front end.

Consent names the patient, so it lives in the data organisation's private collection:
each call goes to the patient's own organisation's peers alone, which alone hold it, and
a grant's fields travel as transient data, never as arguments a block would keep. The
patient's certificate proves who grants; nobody else can grant for them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flowblock.errors import InvalidArgument
from flowblock.identity import Identity, msp_id
from flowblock.ledger import Contract, all_pages
from flowblock.ledger.collections import submit_privately
from flowblock.vocabulary import CONSENT_FIELD, ENROL_FIELD

if TYPE_CHECKING:
    from flowblock.client import Client

RIGHTS = "RWC"
#: Patients enrolled by one transaction (the chaincode's most).
ENROL_BATCH = 1_000


class Consent:
    """The calling patient's consent: grant, revoke, list, and the receipts of its use."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def _own_peers(self) -> list[str]:
        return [msp_id(self.client.identity.organisation)]

    def grant(
        self,
        dataset: str,
        to: str,
        rights: str = "C",
        purpose: str = "research",
        until: str | dt.date | dt.datetime = "",
        record_id: str = "",
    ) -> dict:
        """Let ``to`` (``org:University`` or ``user:alice@University``) use your data in
        ``dataset`` (or one record of it) with ``rights`` (some of R read, W write,
        C compute) for ``purpose``, until ``until`` (none: until you revoke). Granting
        what an active grant says already returns that grant."""
        transient = grant_transient(
            dataset, to, _rights(rights), purpose, _moment(until), record_id
        )
        return self.get(self._private("consent:Grant", transient)["grant_id"])

    def revoke(self, dataset: str, to: str, rights: str = "RWC", record_id: str = "") -> list[dict]:
        """Take ``rights`` back from your grants to ``to`` on ``dataset``; the grants
        changed, each as it now stands."""
        spec = {"dataset": dataset, "to": to, "rights": _rights(rights), "record_id": record_id}
        revoked = self._private("consent:Revoke", {CONSENT_FIELD: json.dumps(spec)})["grants"]
        return [self.get(grant_id) for grant_id in revoked]

    def revoke_grant(self, grant_id: str) -> dict:
        """Revoke one grant entirely."""
        self.client._submit(
            "consent:RevokeGrant", grant_id, endorsing_organisations=self._own_peers
        )
        return self.get(grant_id)

    def get(self, grant_id: str) -> dict:
        """One of your grants, as it stands (read on your organisation's peer: a
        transaction's answer goes into the block, so it gives the grant's id alone)."""
        return self.client._evaluate("consent:GetGrant", grant_id)

    def list(self) -> list[dict]:
        """Your grants, active and revoked."""
        return all_pages(
            lambda bookmark: self.client._evaluate("consent:MyGrants", 100, bookmark), "grants"
        )

    def history(self, grant_id: str) -> list[dict]:
        """Every change of one of your grants, oldest first, with its transaction."""
        return self.client._evaluate("consent:GrantHistory", grant_id)

    def receipts(self) -> list[dict]:
        """Every computation that used your data: dataset, method, who asked, for what,
        when."""
        return self.client.receipts()

    def _private(self, function: str, transient: dict[str, str]) -> dict:
        return self.client._submit(
            function, transient=transient, endorsing_organisations=self._own_peers
        )


def grant_transient(
    dataset: str, to: str, rights: str, purpose: str, until: str = "", record_id: str = ""
) -> dict[str, str]:
    """A grant's fields as ``consent:Grant`` takes them: its transient map (unchecked:
    the chaincode judges them)."""
    spec = {"dataset": dataset, "to": to, "rights": rights, "purpose": purpose,
            "until": until, "record_id": record_id}  # fmt: skip
    return {CONSENT_FIELD: json.dumps(spec)}


def _rights(rights: str) -> str:
    letters = set(str(rights).upper())
    if not letters or not letters <= set(RIGHTS):
        raise InvalidArgument("rights", "some of R (read), W (write) and C (compute)", rights)
    return "".join(letter for letter in RIGHTS if letter in letters)


def _moment(until: str | dt.date | dt.datetime) -> str:
    return until.isoformat() if isinstance(until, dt.date) else str(until or "")


def enrol(contract: Contract, patients: Iterable[Identity]) -> int:
    """Record, in the organisation's private collection, which patient each certificate
    stands for (a patient's certificate carries a pseudonym, never their id), a
    thousand at a time; as an admin or steward of their organisation, whose ``contract``
    this is. Again is harmless. How many were enrolled."""
    pairs = {identity.name: identity.patient for identity in patients}
    if not all(pairs.values()):
        raise InvalidArgument("patients", "patient identities issued with their patient id")
    items = sorted(pairs.items())
    for start in range(0, len(items), ENROL_BATCH):
        batch = dict(items[start : start + ENROL_BATCH])
        submit_privately(contract, "consent:Enrol", {ENROL_FIELD: json.dumps(batch)})
    return len(items)
