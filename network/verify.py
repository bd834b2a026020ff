"""``flowblock verify``: check a ledger's chain and every signature in it.

For each block: its number, its link to the previous header's hash, the hash of its
transactions, and the orderer's signature; for each transaction the validation code
says is valid: its creator's signature and an endorsement policy's worth of valid
endorsements. Every problem names the block it is in, and the summary names the first.

A last record cut short or failing its checksum is a finding when the state database
beside the block file committed that block (damage after the fact, which the devnet
refuses to start on) or when there is no state to ask; when the state never committed
it, it is a torn write the devnet cuts off at its next start, noted in ``torn_tail``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fabric_protos.common import common_pb2
from google.protobuf.message import DecodeError

from flowblock.errors import IdentityError
from flowblock.ledger import blocks
from flowblock.ledger.channel import ChannelConfig, read_channel_config
from flowblock.ledger.membership import MembershipService
from flowblock.ledger.validation import Code, Invalid, check_signatures
from flowblock.network.devnet.blockstore import BlockStore, DamagedBlockFile
from flowblock.network.devnet.ledger import STATE_FILE
from flowblock.network.devnet.statedb import committed_height

SIGNATURES = common_pb2.BlockMetadataIndex.SIGNATURES
FILTER = common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER


@dataclass(frozen=True)
class Finding:
    block: int
    problem: str

    def __str__(self) -> str:
        return f"block {self.block}: {self.problem}"


@dataclass
class ChainReport:
    """What verification found; ``ok`` when it found nothing wrong."""

    blocks: int = 0
    transactions: int = 0
    valid: int = 0
    findings: list[Finding] = field(default_factory=list)
    #: The number of an unfinished last record the state never committed (a write a crash
    #: tore, which the devnet drops when it starts), or None.
    torn_tail: int | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_block(self) -> int | None:
        return min((f.block for f in self.findings), default=None)


def verify_chain(path: str | os.PathLike[str], committed: int | None = None) -> ChainReport:
    """Verify the block file at ``path`` (opened read-only; nothing is repaired).

    ``committed`` is how many blocks the world state has applied; by default it is read
    from the state database beside the file, if there is one.
    """
    path = Path(path)
    if committed is None:
        committed = committed_height(path.with_name(STATE_FILE))
    report = ChainReport()
    try:
        store = BlockStore(path, read_only=True, committed=committed or 0)
    except DamagedBlockFile as damage:
        report.findings.append(Finding(damage.block, damage.problem))
        return report
    try:
        _verify(store, report)
        _verify_end(store, committed, report)
    finally:
        store.close()
    return report


def _verify_end(store: BlockStore, committed: int | None, report: ChainReport) -> None:
    """Whether the file ends where the state says the committed chain does."""
    first_missing = store.missing()
    if first_missing is not None:
        report.findings.append(Finding(first_missing, store.missing_problem()))
    elif store.unfinished is not None and committed is None:
        report.findings.append(
            Finding(
                store.unfinished.block,
                f"{store.unfinished.problem}, and there is no state database beside the "
                "block file to tell whether it was committed",
            )
        )
    elif store.unfinished is not None:
        report.torn_tail = store.unfinished.block


def _verify(store: BlockStore, report: ChainReport) -> None:
    report.blocks = store.height
    if store.height == 0:
        report.findings.append(Finding(0, "the ledger has no blocks"))
        return
    try:
        config = read_channel_config(store.get(0))
    except (DecodeError, ValueError, KeyError) as error:
        report.findings.append(Finding(0, f"the genesis block cannot be read ({error})"))
        return
    membership = MembershipService.from_msp_configs(config.all_msps)
    orderers = {msp.name for msp in config.orderers}
    previous: common_pb2.BlockHeader | None = None
    for number in range(store.height):
        if not store.intact(number):
            report.findings.append(Finding(number, "its stored bytes do not match their checksum"))
        try:
            block = common_pb2.Block.FromString(store.raw(number))
        except DecodeError:
            report.findings.append(Finding(number, "the block cannot be parsed"))
            previous = None
            continue
        for problem in _block_problems(block, number, previous, membership, orderers):
            report.findings.append(Finding(number, problem))
        if number > 0:
            _verify_transactions(block, number, config, membership, report)
        previous = block.header


def _block_problems(
    block: common_pb2.Block,
    number: int,
    previous: common_pb2.BlockHeader | None,
    membership: MembershipService,
    orderers: set[str],
) -> list[str]:
    problems = []
    if block.header.number != number:
        problems.append(f"its header says it is block {block.header.number}")
    if previous is not None and block.header.previous_hash != blocks.header_hash(previous):
        problems.append("its previous-hash does not match the header of the block before it")
    if block.header.data_hash != blocks.data_hash(block.data):
        problems.append("its data hash does not match its transactions")
    try:
        metadata = common_pb2.Metadata.FromString(block.metadata.metadata[SIGNATURES])
    except (DecodeError, IndexError):
        return [*problems, "its orderer signature cannot be read"]
    signed = False
    for signature in metadata.signatures:
        message = blocks.signed_metadata_message(
            metadata.value, signature.signature_header, block.header
        )
        try:
            creator = common_pb2.SignatureHeader.FromString(signature.signature_header).creator
            identity = membership.check_signature(creator, message, signature.signature)
        except (DecodeError, IdentityError):
            continue
        signed = signed or identity.msp_id in orderers
    if not signed:
        problems.append("it carries no valid orderer signature")
    return problems


def _verify_transactions(
    block: common_pb2.Block,
    number: int,
    config: ChannelConfig,
    membership: MembershipService,
    report: ChainReport,
) -> None:
    codes = block.metadata.metadata[FILTER] if len(block.metadata.metadata) > FILTER else b""
    for txnum, raw in enumerate(block.data.data):
        report.transactions += 1
        code = codes[txnum] if txnum < len(codes) else None
        if code != Code.VALID:
            continue
        report.valid += 1
        try:
            check_signatures(common_pb2.Envelope.FromString(raw), membership, config)
        except Invalid as invalid:
            report.findings.append(
                Finding(number, f"transaction {txnum} is marked valid but {invalid}")
            )
        except DecodeError:
            report.findings.append(Finding(number, f"transaction {txnum} cannot be parsed"))
