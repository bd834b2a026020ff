"""The channel's ledger: blocks committed in order, the state they build, and waiting.

Commit order is the crash-safety argument: a block is validated, its validation codes
are written into its TRANSACTIONS_FILTER, it is appended and fsync'd, and only then is
the state advanced in one SQLite transaction. On start, blocks above the state's
height are applied again from their stored codes, so nothing committed is ever lost
and nothing half-applied survives. Private values are applied in that same SQLite
transaction, from the transient store, whose entries are cleared only by it: a replay
finds them still there. The state is opened first: its height is what lets
the block store tell a torn write (cut off) from a committed block damaged later
(refused, in one sentence).
"""

from __future__ import annotations

import threading
from pathlib import Path

from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_event_pb2

from flowblock.ledger import blocks
from flowblock.ledger.channel import ChannelConfig, read_channel_config
from flowblock.ledger.membership import MembershipService
from flowblock.ledger.protocol import unpack_transaction
from flowblock.network.devnet.blockstore import BlockStore
from flowblock.network.devnet.private import private_directory
from flowblock.network.devnet.statedb import CommittedTransaction, StateDB
from flowblock.network.devnet.validation import Validator

FILTER = common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER
#: The files of a channel's ledger, in its folder.
BLOCKS_FILE, STATE_FILE = "blocks.bin", "state.sqlite"


class ChannelLedger:
    """One channel's blocks and world state on disk."""

    def __init__(self, directory: Path, genesis: common_pb2.Block | None = None) -> None:
        private_directory(directory)
        self.state = StateDB(directory / STATE_FILE)
        try:
            self.blocks = BlockStore(directory / BLOCKS_FILE, committed=self.state.height)
        except BaseException:
            self.state.close()
            raise
        if self.blocks.height == 0:
            if genesis is None:
                raise ValueError(f"no ledger in {directory} and no genesis block to start one")
            self.blocks.append(genesis)
        self.config: ChannelConfig = read_channel_config(self.blocks.get(0))
        self.membership = MembershipService.from_msp_configs(self.config.all_msps)
        self.validator = Validator(self.config, self.membership, self.state)
        self._committed = threading.Condition()
        self._recover()

    def _recover(self) -> None:
        if self.state.height == 0:
            self.state.commit_block(0, [], [])
        for number in range(self.state.height, self.blocks.height):
            outcome = self.validator.replay(self.blocks.get(number))
            self.state.commit_block(number, outcome.writes, outcome.transactions, outcome.private)

    @property
    def height(self) -> int:
        return self.blocks.height

    def last_header_hash(self) -> bytes:
        return blocks.header_hash(self.blocks.get(self.height - 1).header)

    def commit(self, block: common_pb2.Block) -> list[int]:
        """Validate, store and apply one block; returns its validation codes."""
        outcome = self.validator.validate(block)
        block.metadata.metadata[FILTER] = outcome.filter
        self.blocks.append(block)
        self.state.commit_block(
            block.header.number, outcome.writes, outcome.transactions, outcome.private
        )
        with self._committed:
            self._committed.notify_all()
        return outcome.codes

    def wait_for_transaction(self, tx_id: str, timeout: float) -> CommittedTransaction | None:
        """The transaction's commit record, waiting up to ``timeout`` seconds for it."""
        with self._committed:
            found = self._committed.wait_for(lambda: self.state.transaction(tx_id), timeout)
        return found or None

    @property
    def committed_height(self) -> int:
        """Blocks whose state is applied too: all that readers may be told of (an event
        announced before its block's state would send a client to read what is not yet
        there)."""
        return self.state.height

    def wait_for_height(self, height: int, timeout: float) -> bool:
        """Wait until ``height`` blocks are committed, state included."""
        with self._committed:
            return self._committed.wait_for(lambda: self.committed_height >= height, timeout)

    def events(
        self, number: int, chaincode: str
    ) -> list[tuple[int, chaincode_event_pb2.ChaincodeEvent]]:
        """(transaction number, event) of ``chaincode``'s valid transactions in a block."""
        block = self.blocks.get(number)
        codes = block.metadata.metadata[FILTER]
        found = []
        for txnum, raw in enumerate(block.data.data):
            if number == 0 or codes[txnum] != 0:
                continue
            action = unpack_transaction(common_pb2.Envelope.FromString(raw)).chaincode_action
            if action.events:
                event = chaincode_event_pb2.ChaincodeEvent.FromString(action.events)
                if event.chaincode_id == chaincode:
                    found.append((txnum, event))
        return found

    def close(self) -> None:
        with self._committed:
            self._committed.notify_all()
        self.blocks.close()
        self.state.close()
