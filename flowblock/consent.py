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
        spec = {"dataset": dataset, "to": to, "rights": _rights(rights), "purpose": purpose,
                "until": _moment(until), "record_id": record_id}  # fmt: skip
        return self.get(self._private("consent:Grant", spec)["grant_id"])

    def revoke(self, dataset: str, to: str, rights: str = "RWC", record_id: str = "") -> list[dict]:
        """Take ``rights`` back from your grants to ``to`` on ``dataset``; the grants
        changed, each as it now stands."""
        spec = {"dataset": dataset, "to": to, "rights": _rights(rights), "record_id": record_id}
        return [self.get(grant_id) for grant_id in self._private("consent:Revoke", spec)["grants"]]

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

    def _private(self, function: str, spec: dict) -> dict | list:
        return self.client._submit(
            function,
            transient={CONSENT_FIELD: json.dumps(spec)},
            endorsing_organisations=self._own_peers,
        )


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
    whole = contract.network.get_contract(getattr(contract, "chaincode", "flowblock"))
    own = [contract.network.gateway.identity.msp_id]
    items = sorted(pairs.items())
    for start in range(0, len(items), ENROL_BATCH):
        batch = dict(items[start : start + ENROL_BATCH])
        whole.submit("consent:Enrol", transient={ENROL_FIELD: json.dumps(batch)},
                     endorsing_organisations=own)  # fmt: skip
    return len(items)
