"""Finding 4 of issue 17: a damaged last block must not be dropped without a word.

A record at the end of the block file that fails its checksum is either a write a
crash tore (the block never committed: the state database's height is below it) or a
committed block damaged later (the state committed it). Only the first may be cut off;
the second stops the devnet with one sentence and makes ``flowblock verify`` fail,
naming the block, so nothing committed is silently rewritten.
"""

from __future__ import annotations

import json

import pytest

from flowblock.cli import main
from flowblock.errors import LedgerError
from flowblock.network.devnet.blockstore import BlockStore, DamagedBlockFile
from flowblock.network.devnet.ledger import ChannelLedger
from flowblock.network.devnet.statedb import StateDB
from flowblock.network.verify import verify_chain
from flowblock.testing.ledger import DevnetProcess, block_store_with

CHANNEL = "flowblock"


def _ledger_dir(devnet: DevnetProcess):
    return devnet.data_dir / "devnet" / CHANNEL


def _flip_a_bit_in_the_body_of(path, number: int) -> bytes:
    """Damage block ``number``'s stored body; returns the file's bytes after."""
    store = BlockStore(path, read_only=True)
    offset, length = store._offsets[number]
    store.close()
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return bytes(data)


def _commit_heights(path, height: int) -> None:
    """A state database that has committed blocks 0 to ``height - 1``."""
    state = StateDB(path)
    for number in range(height):
        state.commit_block(number, [], [])
    state.close()


def test_a_damaged_last_committed_block_is_named_and_the_devnet_refuses_to_start(
    devnet, demo_world, asset_chaincode, capsys
):
    contract = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    contract = contract.get_contract("asset")
    for n in range(3):
        contract.submit("Create", f"kept{n}", "alice", n)
    devnet.stop()
    path = _ledger_dir(devnet) / "blocks.bin"
    last = BlockStore(path, read_only=True).height - 1
    damaged = _flip_a_bit_in_the_body_of(path, last)

    assert main(["verify", "--data-dir", str(devnet.data_dir)]) == 1
    out, err = capsys.readouterr()
    assert f"block {last}:" in out
    assert f"the first in block {last}" in err
    assert verify_chain(path).first_bad_block == last

    restarted = DevnetProcess(devnet.data_dir, {"asset": asset_chaincode.address})
    with pytest.raises(RuntimeError):
        restarted.start(timeout=30)
    said = [line for line in restarted.output if line.startswith("flowblock:")]
    assert len(said) == 1, restarted.output
    assert f"block {last} is damaged" in said[0]
    assert "restore the block store" in said[0]
    assert "Traceback" not in "".join(restarted.output)
    assert path.read_bytes() == damaged  # nothing cut off, nothing written over it


@pytest.mark.unit
def test_a_damaged_committed_tail_stops_the_ledger_rewriting_nothing(tmp_path):
    directory = tmp_path / "channel"
    directory.mkdir()
    path = directory / "blocks.bin"
    block_store_with(path, 3)
    _commit_heights(directory / "state.sqlite", 3)
    damaged = _flip_a_bit_in_the_body_of(path, 2)
    with pytest.raises(DamagedBlockFile, match="block 2 is damaged") as caught:
        ChannelLedger(directory)
    assert isinstance(caught.value, LedgerError)
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == damaged


@pytest.mark.unit
def test_a_torn_uncommitted_tail_is_still_cut_off(tmp_path):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 3)
    _flip_a_bit_in_the_body_of(path, 2)
    store = BlockStore(path, committed=2)  # the state never applied block 2
    assert store.height == 2
    store.close()
    whole = path.read_bytes()
    block_store_with(tmp_path / "short.bin", 3)
    (tmp_path / "short.bin").write_bytes((tmp_path / "short.bin").read_bytes()[:-5])
    store = BlockStore(tmp_path / "short.bin", committed=2)
    assert store.height == 2
    store.close()
    assert BlockStore(path, committed=2).height == 2 and path.read_bytes() == whole


@pytest.mark.unit
def test_blocks_the_state_committed_but_the_file_lacks_stop_the_ledger(tmp_path):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 3)
    store = BlockStore(path, read_only=True)
    offset, _ = store._offsets[2]
    store.close()
    cut = path.read_bytes()[: offset - 16]  # block 2's whole record is gone
    path.write_bytes(cut)
    with pytest.raises(DamagedBlockFile, match="block 2"):
        BlockStore(path, committed=3)
    assert path.read_bytes() == cut
    named = {finding.block for finding in verify_chain(path, committed=3).findings}
    assert 2 in named  # (these test blocks carry no channel config: block 0 is named too)


@pytest.mark.unit
def test_verify_names_a_torn_tail_only_when_the_state_committed_it(tmp_path):
    directory = tmp_path / "channel"
    directory.mkdir()
    path = directory / "blocks.bin"
    block_store_with(path, 3)
    _flip_a_bit_in_the_body_of(path, 2)
    (tmp_path / "elsewhere.bin").write_bytes(path.read_bytes())  # no state beside it
    _commit_heights(directory / "state.sqlite", 2)
    torn = verify_chain(path)
    assert 2 not in {finding.block for finding in torn.findings}
    assert torn.torn_tail == 2
    assert 2 in {finding.block for finding in verify_chain(path, committed=3).findings}
    assert 2 in {finding.block for finding in verify_chain(tmp_path / "elsewhere.bin").findings}


@pytest.mark.unit
def test_verify_summary_names_the_block_whose_header_is_damaged(tmp_path, capsys):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 3)
    store = BlockStore(path, read_only=True)
    second_body, _ = store._offsets[1]
    store.close()
    data = bytearray(path.read_bytes())
    data[second_body - 9] ^= 0xFF  # a byte of block 1's length
    path.write_bytes(bytes(data))

    report = verify_chain(path)
    assert [finding.block for finding in report.findings] == [1]
    assert main(["verify", "--blocks", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("block 1:")
    assert "the first in block 1" in err


def test_a_kill_9_between_block_and_state_still_recovers(devnet, demo_world, asset_chaincode):
    """The state's height below the file's: the block is applied again, nothing refused."""
    contract = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    contract = contract.get_contract("asset")
    contract.submit("Create", "before", "alice", 1)
    devnet.kill()
    state = StateDB(_ledger_dir(devnet) / "state.sqlite")
    height = state.height
    state._writer.execute("UPDATE meta SET value=? WHERE name='height'", (height - 1,))
    state.close()
    restarted = DevnetProcess(devnet.data_dir, {"asset": asset_chaincode.address}).start()
    try:
        again = restarted.gateway(demo_world.identity("alice")).get_network(CHANNEL)
        assert json.loads(again.get_contract("asset").evaluate("Read", "before"))["value"] == 1
    finally:
        restarted.stop()
