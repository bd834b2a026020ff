"""Checking a token without trusting any one peer: what ``Client.verify`` reports.

A researcher's gateway peer could lie about a token; so every check here is made from
what the researcher can check alone: the peers' signatures on the token as endorsed now,
the sealed result against its hash, the code that ran against the catalogue, and the
ledger's history of the token. Each check stands alone, so one failing says which part
of the story does not hold. ``Job.result`` uses :func:`endorsed_token` before it shows a
result. This module builds on :mod:`flowblock.client` (the client imports it only when
called, so the two load in either order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowblock.client import _STAGE, refusal
from flowblock.cohorts import commitment, part_hash
from flowblock.errors import EndorseError, FlowBlockError
from flowblock.identity.certificates import check_issued_by, msp_id, node_ou
from flowblock.identity.signing import verify as verify_signature
from flowblock.sealing import digest, open_sealed

if TYPE_CHECKING:
    from flowblock.client import Client

__all__ = ["Check", "Verification", "endorsed_token", "verify"]


@dataclass(frozen=True)
class Check:
    """One check of a verification: what was checked, whether it held, and what was seen."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


@dataclass
class Verification:
    """What ``Client.verify`` found about a token, one line per check."""

    token_id: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def __str__(self) -> str:
        verdict = "verified" if self.ok else "NOT verified"
        lines = [f"token {self.token_id[:12]}… {verdict}"]
        return "\n".join(lines + [f"  {check}" for check in self.checks])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def verify(client: Client, token_id: str) -> Verification:
    """Every check a researcher can make from the Gateway alone, without trusting one peer."""
    token = client._evaluate("GetToken", token_id)
    checks = [_check_endorsements(client, token)]
    checks += _check_result(client, token)
    checks.append(_check_code(client, token))
    checks.append(_check_trail(client, token))
    if _may_open_cohort(client, token):
        checks.append(_check_cohort(client, token))
    for input_id in token["inputs"]:
        earlier = client._evaluate("GetToken", input_id)
        kept = (earlier["result"] or {}).get("output_hash", "")
        checks.append(
            Check(
                f"input {input_id[:12]}…",
                earlier["status"] == "DONE"
                and bool(kept)
                and earlier["requester"] == token["requester"],
                f"{earlier['method']} on {earlier['dataset']} is {earlier['status']}, its output "
                + (f"kept data-side as {kept[:12]}…" if kept else "not kept"),
            )
        )
    return Verification(token["token_id"], checks)


def endorsed_token(client: Client, token_id: str) -> tuple[dict, list[str], list[str]]:
    """The token as the peers endorse it now, the MSP ids whose peers signed it, and what
    is wrong with the signatures (nothing, when the list is empty).

    A peer's signature counts when it verifies and its certificate is a peer's; one of
    your own organisation's must also be certified by your organisation's CA, so that a
    gateway peer alone cannot make up a token: the data organisation's peer and yours
    must both have signed this very answer.
    """
    from cryptography import x509
    from fabric_protos.msp import identities_pb2

    from flowblock.ledger import protocol

    try:
        _, envelope = client._contract.endorse("GetToken", token_id)
    except EndorseError as error:
        raise refusal(error) from None
    unpacked = protocol.unpack_transaction(envelope)
    endorsed = json.loads(unpacked.chaincode_action.response.payload)
    response = unpacked.action_payload.action.proposal_response_payload
    mine = msp_id(client.identity.organisation)
    signers, problems = [], []
    for endorsement in unpacked.endorsements:
        serialized = identities_pb2.SerializedIdentity.FromString(endorsement.endorser)
        certificate = x509.load_pem_x509_certificate(serialized.id_bytes)
        subject = certificate.subject.rfc4514_string()
        try:
            verify_signature(
                certificate.public_key(),
                protocol.endorsement_message(response, endorsement.endorser),
                endorsement.signature,
            )
        except FlowBlockError:
            problems.append(f"the signature of {subject} does not verify")
            continue
        ous = certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        if [ou.value for ou in ous] != [node_ou("peer")]:
            problems.append(f"{subject} is not a peer")
            continue
        trusted = list(client.identity.ca_certificates)
        if serialized.mspid == mine and check_issued_by(certificate, trusted) is not None:
            problems.append(f"{subject} was not certified by your organisation's CA")
            continue
        signers.append(serialized.mspid)
    data_org = msp_id(endorsed.get("data_org", "")) if endorsed.get("data_org") else ""
    for needed, whose in ((data_org, "the data organisation's"), (mine, "your organisation's")):
        if needed and needed not in signers:
            problems.append(f"no valid signature of {whose} peer ({needed})")
    return endorsed, signers, problems


def _check_endorsements(client: Client, token: dict) -> Check:
    """The token as the peers endorse it now: each signature, each signer a peer, the data
    organisation's and yours among them."""
    endorsed, signers, problems = endorsed_token(client, token["token_id"])
    if endorsed != token:
        problems.append("the peers endorse a different token than the one read")
    detail = "; ".join(problems) or (
        f"{len(signers)} valid peer signature(s) of {', '.join(sorted(signers))} on the token"
    )
    return Check("signatures", bool(signers) and not problems, detail)


def _check_result(client: Client, token: dict) -> list[Check]:
    """The sealed result opens for you, matches its hash on the ledger, and names its token
    (for its requester: nobody else can open it); the policy it was released under."""
    if token["status"] != "DONE":
        missing = f"the token is {token['status']}; there is no result to check"
        return [Check("result hash", False, missing)]
    result = token["result"]
    policy = result.get("policy_hash", "")
    checks = [
        Check(
            "policy hash",
            len(policy) == 64,
            f"disclosure policy {policy[:12]}… of {token['data_org']} recorded with the result",
        )
    ]
    if "encrypted" not in result:  # sealed to its requester, shown to nobody else
        return checks
    try:
        plaintext = open_sealed(result["encrypted"], client.identity, token["token_id"])
    except FlowBlockError as error:
        return [Check("result hash", False, str(error)), *checks]
    opened = digest(plaintext)
    released = json.loads(plaintext)
    named = (released.get("token_id"), released.get("method"), released.get("version"))
    expected = (token["token_id"], token["method"], token["version"])
    return [
        Check(
            "result hash",
            opened == result["result_hash"],
            f"the opened result hashes to {opened[:12]}…, the ledger records "
            f"{result['result_hash'][:12]}…",
        ),
        Check(
            "result binding",
            named == expected,
            f"the result names {named[1]}@{named[2]} for token {str(named[0])[:12]}…",
        ),
        *checks,
    ]


def _may_open_cohort(client: Client, token: dict) -> bool:
    """Only the data organisation's own auditor, steward or executor may read its cohorts."""
    identity = client.identity
    return (
        token["status"] == "DONE"
        and identity.organisation == token["data_org"]
        and identity.role in ("auditor", "steward", "executor")
    )


def _check_cohort(client: Client, token: dict) -> Check:
    """The cohort kept privately opens the commitment the result recorded on the ledger."""
    result = token["result"]
    try:
        opened = client._evaluate("consent:Cohort", token["token_id"])
    except FlowBlockError as error:
        return Check("cohort commitment", False, str(error))
    parts = [part.encode() for part in opened["parts"]]
    hashes = [part_hash(part) for part in parts]
    patients = sum(len(json.loads(part)["patients"]) for part in parts)
    ok = hashes == result["cohort_parts"] and commitment(hashes) == result["cohort_commitment"]
    return Check(
        "cohort commitment",
        ok,
        f"{len(parts)} private part(s), {patients} patient(s), "
        + ("open" if ok else "do NOT open")
        + f" the commitment {result['cohort_commitment'][:12]}… on the ledger",
    )


def _check_code(client: Client, token: dict) -> Check:
    """The code that ran is the code the catalogue published for that method version."""
    method = client._evaluate("catalogue:GetMethod", token["method"], token["version"])
    ran = (token["result"] or {}).get("code_hash", token["code_hash"])
    agree = method["code_hash"] == token["code_hash"] == ran
    return Check(
        "code hash",
        agree,
        f"{token['method']}@{token['version']} published as {method['code_hash'][:12]}…, "
        f"requested as {token['code_hash'][:12]}…, run as {ran[:12]}…",
    )


def _check_trail(client: Client, token: dict) -> Check:
    """The ledger's history of the token: requested, decided, claimed, completed, in order."""
    changes = client.history(token["token_id"])
    statuses = [change["token"]["status"] for change in changes]
    stages = [_STAGE[status] for status in statuses]
    first = changes[0]["token"] if changes else {}
    claimed_by = token.get("claimed_by", "")
    problems = []
    if first.get("requester") != token["requester"] or stages[:1] not in ([0], [1]):
        problems.append("it does not start with its request")
    if stages != sorted(stages):
        problems.append(f"its statuses go back ({' → '.join(statuses)})")
    if claimed_by and not claimed_by.endswith("@" + token["data_org"]):
        problems.append(f"it was claimed by {claimed_by}, outside {token['data_org']}")
    trail = " → ".join(dict.fromkeys(statuses))
    detail = "; ".join(problems) or (
        f"{len(changes)} transactions: {trail}; decided by {token['decided_by'] or 'nobody yet'}"
        + (f", run by {claimed_by}" if claimed_by else "")
    )
    return Check("audit trail", not problems, detail)
