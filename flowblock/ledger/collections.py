"""Private data collections: the names Fabric gives them and who must endorse their writes.

Only Fabric's *implicit* collections are used: every application organisation ``X`` of
a channel has ``_implicit_org_X``, whose values live on X's peers alone while their
hashes go into blocks for everyone. The chaincode names them with
:func:`implicit_collection`; the devnet and ``flowblock verify`` apply the endorsement
rule of Fabric's v2 validator with :func:`endorsement_refusal`, so both judge a
transaction alike.
"""

from __future__ import annotations

from collections.abc import Iterable

IMPLICIT_COLLECTION_PREFIX = "_implicit_org_"


def implicit_collection(msp_id: str) -> str:
    """The implicit private data collection of the organisation ``msp_id``."""
    return IMPLICIT_COLLECTION_PREFIX + msp_id


def implicit_collection_owner(collection: str) -> str | None:
    """The MSP id whose implicit collection ``collection`` is, or None if it is not one."""
    if not collection.startswith(IMPLICIT_COLLECTION_PREFIX):
        return None
    return collection.removeprefix(IMPLICIT_COLLECTION_PREFIX) or None


def endorsement_refusal(
    endorsed_by: set[str],
    organisations: frozenset[str],
    required: int,
    public_writes: bool,
    written_collections: Iterable[str],
) -> str | None:
    """Why endorsements by ``endorsed_by`` do not satisfy the policy, or None if they do.

    As Fabric's v2 validator applies policies per written key: a write to
    ``_implicit_org_X`` needs X's peer; public writes, and a transaction that writes
    nothing at all, need ``required`` of the channel's ``organisations`` (its chaincode
    policy). A transaction that writes only private data needs no more than its owners.
    """
    collections = sorted(set(written_collections))
    for collection in collections:
        owner = implicit_collection_owner(collection)
        if owner is None or owner not in organisations:
            return f"{collection!r} is not a private data collection of this channel"
        if owner not in endorsed_by:
            return f"a write to {collection} needs an endorsement by {owner}"
    if public_writes or not collections:
        count = len(endorsed_by & organisations)
        if count < required:
            return (
                f"endorsed by {sorted(endorsed_by) or 'no organisation'}, "
                f"{required} of {len(organisations)} organisations required"
            )
    return None


def submit_privately(contract, function: str, transient: dict[str, bytes | str]) -> bytes:
    """Submit ``function`` (``contract:Function``) of the whole chaincode ``contract`` is
    part of, with ``transient`` data, endorsed by the caller's organisation alone: a
    transaction that writes only to that organisation's implicit collection (whose
    endorsement policy is that organisation's, and whose values no other peer holds)."""
    own = [contract.network.gateway.identity.msp_id]
    whole = contract.network.get_contract(getattr(contract, "chaincode", "flowblock"))
    return whole.submit(function, transient=transient, endorsing_organisations=own)


def set_up_private_collection(contract) -> bool:  # contract: flowblock.ledger.Contract
    """Give the caller's organisation's implicit collection the secret FlowBlock's
    chaincode hides and salts its private keys and values with (random, sent as
    transient data to the organisation's own peers); False if it had one already.

    The caller is an admin, steward or executor of the organisation; whichever of
    them writes first (the executor at start, a steward's first import) sets it up.
    """
    import secrets

    from flowblock.errors import EndorseError
    from flowblock.vocabulary import SECRET_FIELD, ChaincodeStatus

    try:
        submit_privately(
            contract, "consent:SetUpCollection", {SECRET_FIELD: secrets.token_bytes(32)}
        )
    except EndorseError as error:
        if error.chaincode_status != ChaincodeStatus.CONFLICT:
            raise
        return False
    return True
